"""Tasks: turn songs into Pair windows (source and target rolls of one excerpt).

* ``melody2accomp``: source = the melody track; target = all other pitched tracks merged.
* ``melody2band``: source = the melody; target = the LPD-5 families (drums, piano, guitar,
  bass, strings), each merged, the melody left out of its family.
* ``version2version``: two versions of one song, all pitched tracks merged in each,
  aligned by DTW on beat-synchronous chroma (see ``align.py``); the target is warped onto
  the source's grid.

A window is ``W`` steps starting on a downbeat; successive windows start on the first
downbeat at least ``hop`` steps after the previous start. A window whose source or target
has fewer than ``min_notes`` onsets is skipped.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from musicpairs.config import RollSpec
from musicpairs.errors import MusicpairsError
from musicpairs.midi import Notes, Score, TempoChange, Track
from musicpairs.roles import LPD5, assign_roles, choose_melody
from musicpairs.roll import ONSET, Roll, midi_to_roll, planes_to_layers

TASKS = {
    "melody2accomp": "source: the melody track; target: all other pitched tracks merged",
    "melody2band": "source: the melody; target: LPD-5 families (drums, piano, guitar, bass, "
                   "strings)",
    "version2version": "source and target: two versions of one song, pitched tracks merged, "
                       "aligned by DTW on beat chroma",
}

CHANNELS = {
    "melody2accomp": (("melody",), ("accompaniment",)),
    "melody2band": (("melody",), LPD5),
    "version2version": (("version_a",), ("version_b",)),
}


class PairingError(MusicpairsError):
    """A song or file yields no pair; ``reason`` says why (no melody, no usable window...).

    ``kind`` names the reason without its particulars where a build counts it
    (``no confident melody``, ``no melody track``); empty otherwise.
    """

    def __init__(self, path: str, reason: str, kind: str = ""):
        self.path, self.reason, self.kind = path, reason, kind
        super().__init__(f"{path}: {reason}")

    def __reduce__(self):
        return (type(self), (self.path, self.reason, self.kind))


@dataclass(frozen=True)
class WindowConfig:
    """How songs are cut into windows."""

    window: int = 256
    hop: int = 128
    min_notes: int = 4


@dataclass
class Pair:
    """One training example.

    Attributes:
        source: uint8 [Cs, 128, W], C = 2 x channels (onset, frame per channel); may be a
            view into a song's roll.
        target: uint8 [Ct, 128, W].
    """

    pair_id: str
    song_id: str
    source: np.ndarray
    target: np.ndarray
    confidence: float
    source_file: str
    target_file: str
    start_beat: float


def channel_shapes(task: str, window: int) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """(source_shape, target_shape) of a task's pairs."""
    src, tgt = CHANNELS[task]
    return (2 * len(src), 128, window), (2 * len(tgt), 128, window)


def merge_tracks(roll: Roll, tracks: list[int]) -> np.ndarray:
    """Tracks merged into one channel: the loudest onset and frame of any track.

    Returns:
        uint8 [2, 128, T] (zeros when ``tracks`` is empty).
    """
    return roll.merged(list(tracks))


def melody_split(roll: Roll, task: str, *,
                 min_confidence: float = 0.0) -> tuple[np.ndarray, np.ndarray, str]:
    """Source and target channels of a single-file task.

    Args:
        roll: The song.
        task: ``melody2accomp`` or ``melody2band``.
        min_confidence: See :func:`musicpairs.roles.choose_melody`.

    Returns:
        (source uint8 [2, 128, T], target uint8 [Ct, 128, T], how the melody was found:
        ``"name"`` or ``"content"``).

    Raises:
        PairingError: No melody track (or none found confidently), or nothing else to
            accompany it.
    """
    choice = choose_melody(roll, min_confidence=min_confidence, explain=False)
    if choice.track is None:
        if choice.by == "not confident":
            raise PairingError(roll.source, f"no confident melody: confidence "
                               f"{choice.confidence:.2f} < {min_confidence:.2f} "
                               "(--melody-confidence; two tracks look alike)",
                               kind="no confident melody")
        raise PairingError(roll.source, "no melody track (no pitched, non-percussive track "
                           "that is a plausible line)", kind="no melody track")
    melody = choice.track
    source = roll.merged([melody])
    others = [k for k in range(len(roll.tracks)) if k != melody]
    if task == "melody2accomp":
        pitched = [k for k in others if not roll.tracks[k].is_drum]
        if not pitched:
            raise PairingError(roll.source, "no accompaniment track besides the melody")
        return source, merge_tracks(roll, pitched), choice.by
    roles = assign_roles(roll, choice=choice)
    families = [merge_tracks(roll, [k for k in others if roles[k].lpd5 == family])
                for family in LPD5]
    if not any(f.any() for f in families):
        raise PairingError(roll.source, "no band track besides the melody")
    return source, np.concatenate(families, axis=0), choice.by


def window_starts(downbeats: np.ndarray, n_steps: int, hop: int) -> list[int]:
    """Downbeats where windows start: the first bar, then the first bar >= hop later."""
    starts: list[int] = []
    for d in downbeats.tolist():
        if d < n_steps and (not starts or d >= starts[-1] + hop):
            starts.append(d)
    return starts


def pair_id(task: str, song_id: str, source_file: str, target_file: str, start: int) -> str:
    """Stable id of a pair: the same inputs always give the same id."""
    key = "\0".join((task, song_id, source_file, target_file, str(start)))
    return hashlib.sha1(key.encode()).hexdigest()[:20]


def cut_windows(
    task: str,
    song_id: str,
    source: np.ndarray,
    target: np.ndarray,
    downbeats: np.ndarray,
    cfg: WindowConfig,
    *,
    steps_per_beat: int,
    source_file: str,
    target_file: str,
    confidence: float = 1.0,
) -> list[Pair]:
    """Cut aligned source [Cs, 128, T] and target [Ct, 128, T] rolls into Pair windows.

    Windows running past the end are padded with silence.
    """
    n_steps = source.shape[-1]
    # Onsets are counted on the onset planes of each window before anything is copied
    # (a whole-array count_nonzero is far faster than per-step counts with an axis).
    src_onsets, tgt_onsets = source[ONSET::2], target[ONSET::2]
    pairs = []
    for start in window_starts(downbeats, n_steps, cfg.hop):
        stop = start + cfg.window
        if (np.count_nonzero(src_onsets[..., start:stop]) < cfg.min_notes
                or np.count_nonzero(tgt_onsets[..., start:stop]) < cfg.min_notes):
            continue
        src = _window(source, start, cfg.window)
        tgt = _window(target, start, cfg.window)
        # src and tgt may be views into the song's rolls: the shard writer copies once.
        pairs.append(Pair(
            pair_id(task, song_id, source_file, target_file, start), song_id, src, tgt,
            confidence, source_file, target_file, start / steps_per_beat,
        ))
    return pairs


def _window(planes: np.ndarray, start: int, width: int) -> np.ndarray:
    piece = planes[..., start : start + width]
    if piece.shape[-1] == width:
        return piece
    pad = np.zeros((*planes.shape[:-1], width), np.uint8)
    pad[..., : piece.shape[-1]] = piece
    return pad


# --------------------------------------------------------------------------------------
# A pair as MIDI, and back

#: Beats before the window in a pair's MIDI (bar 1), for notes already sounding at its start.
LEAD_IN_BEATS = 4
#: General MIDI programs for channels, so source and target sound apart.
CHANNEL_PROGRAMS = {"melody": 73, "accompaniment": 0, "piano": 0, "guitar": 25, "bass": 33,
                    "strings": 48, "version_a": 0, "version_b": 0}


def pair_to_score(meta, source: np.ndarray, target: np.ndarray,
                  *, qpm: float = 120.0) -> Score:
    """A pair's rolls as a multi-track Score: one track per channel (more when needed).

    ``meta`` is the shard's ``ShardMeta`` (shapes, channels, steps per beat).

    Tracks are named ``source: <channel>`` and ``target: <channel>``. The window starts
    at bar 2: bar 1 (four beats) holds the notes already sounding when the window
    begins. A channel whose notes overlap on one pitch (merged tracks) gets extra tracks
    ``... (2)``, ``(3)``; :func:`score_to_pair` merges them back, so the rolls come back
    exactly (see :func:`musicpairs.roll.planes_to_layers`).
    """
    spb = meta.steps_per_beat
    scale = 120  # ticks per step
    lead = LEAD_IN_BEATS * spb
    tracks = []
    for side, planes, channels in (("source", source, meta.source_channels),
                                   ("target", target, meta.target_channels)):
        for c, name in enumerate(channels):
            layers = planes_to_layers(planes[2 * c : 2 * c + 2])
            for i, notes in enumerate(layers):
                label = f"{side}: {name}" + (f" ({i + 1})" if i else "")
                start = np.where(notes.start < 0, -lead, notes.start)
                tracks.append(Track(label, CHANNEL_PROGRAMS.get(name, 0), name == "drums",
                                    Notes((start + lead) * scale, (notes.end + lead) * scale,
                                          notes.pitch, notes.velocity)))
    return Score(scale * spb, tracks, [TempoChange(0, round(60_000_000 / qpm))])



def score_to_pair(score: Score, meta) -> tuple[np.ndarray, np.ndarray]:
    """The rolls of a Score written by :func:`pair_to_score` (tracks merged by channel).

    Returns:
        (source, target) uint8 arrays of the shapes in ``meta``.
    """
    spb = meta.steps_per_beat
    roll = midi_to_roll(score, RollSpec(steps_per_beat=spb))
    lead, width = LEAD_IN_BEATS * spb, meta.source_shape[-1]
    out = []
    for side, channels in (("source", meta.source_channels),
                           ("target", meta.target_channels)):
        planes = np.zeros((2 * len(channels), 128, width), np.uint8)
        for c, name in enumerate(channels):
            label = f"{side}: {name}"
            for k, t in enumerate(roll.tracks):
                if t.name == label or t.name.startswith(label + " ("):
                    piece = roll.planes[k, :, :, lead : lead + width]
                    view = planes[2 * c : 2 * c + 2, :, : piece.shape[-1]]
                    np.maximum(view, piece, out=view)
        out.append(planes)
    return out[0], out[1]
