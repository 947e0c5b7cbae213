"""Scores on the beat grid: lossless onset + frame piano rolls, and back to MIDI.

The grid (ARCHITECTURE.md, the data contract): time is counted in steps of
``1 / steps_per_beat`` quarter notes from MIDI ticks, so tempo changes never move a note.
A note starts at ``round(start_tick * spb / tpq)`` (halves round up) and lasts at least one
step.

A song's roll is ``uint8 [tracks, 2, 128, T]``: plane ``ONSET`` holds the note's velocity at
its first step, plane ``FRAME`` its velocity on every step it sounds; the row is the MIDI
pitch. Within a track and pitch, notes on the grid are made disjoint so the roll can be
decoded exactly:

* notes starting on the same step merge into one (the highest velocity, the latest end);
* a note is cut where the next note of its pitch starts (as a synthesizer re-triggers it);
* velocity 0 (never produced by the parsers) becomes 1, so a sounding note is never 0.

Under these rules ``midi_to_roll(roll_to_midi(r)) == r`` for every roll ``r`` made by
``midi_to_roll``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path

import numpy as np

from musicpairs.config import RollSpec
from musicpairs.errors import MidiReadError
from musicpairs.midi import (
    MidiSource,
    Notes,
    Score,
    TempoChange,
    TimeSignature,
    Track,
    normalize_tempos,
    normalize_time_signatures,
    read_midi,
    write_midi,
)

ONSET, FRAME = 0, 1
PITCHES = 128


@dataclass(frozen=True)
class TrackInfo:
    """What a roll keeps of a track besides its notes."""

    name: str
    program: int
    is_drum: bool


@dataclass(eq=False)
class Roll:
    """A multitrack song on the beat grid.

    Attributes:
        planes: uint8 [tracks, 2, 128, T]; ``planes[k, ONSET]`` and ``planes[k, FRAME]``.
        tracks: One :class:`TrackInfo` per track, in the order of ``planes``.
        tempos: The tempo map, times in steps, the first at step 0.
        time_signatures: The meters, times in steps, the first at step 0.
        spec: The grid the roll is on.
        source: Where it came from, for messages (not compared).
    """

    planes: np.ndarray
    tracks: tuple[TrackInfo, ...]
    tempos: tuple[TempoChange, ...]
    time_signatures: tuple[TimeSignature, ...]
    spec: RollSpec = field(default_factory=RollSpec)
    source: str = ""

    def __post_init__(self):
        if self.planes.dtype != np.uint8 or self.planes.ndim != 4:
            raise ValueError(f"planes must be uint8 [tracks, 2, 128, T], got "
                             f"{self.planes.dtype} {self.planes.shape}")
        if self.planes.shape[1:3] != (2, PITCHES) or self.planes.shape[0] != len(self.tracks):
            raise ValueError(f"planes shape {self.planes.shape} does not fit "
                             f"{len(self.tracks)} tracks x 2 planes x 128 pitches")
        self.tracks = tuple(self.tracks)
        self.tempos = tuple(self.tempos)
        self.time_signatures = tuple(self.time_signatures)

    @property
    def n_steps(self) -> int:
        """T, the length in grid steps."""
        return self.planes.shape[-1]

    @property
    def n_beats(self) -> float:
        return self.n_steps / self.spec.steps_per_beat

    @property
    def downbeats(self) -> np.ndarray:
        """int64 [bars]: the step of every bar start before T, from the time signatures."""
        return downbeat_steps(self.time_signatures, self.n_steps, self.spec.steps_per_beat)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Roll):
            return NotImplemented
        return (
            self.spec == other.spec
            and self.tracks == other.tracks
            and self.tempos == other.tempos
            and self.time_signatures == other.time_signatures
            and self.planes.shape == other.planes.shape
            and np.array_equal(self.planes, other.planes)
        )

    __hash__ = None  # mutable array inside

    def notes(self, track: int) -> Notes:
        """The notes of one track, in steps (see :func:`planes_to_notes`)."""
        return planes_to_notes(self.planes[track])


# --------------------------------------------------------------------------------------
# Encoding


def ticks_to_steps(ticks: np.ndarray | int, ticks_per_quarter: int, steps_per_beat: int):
    """Grid step of each tick: ``round(tick * spb / tpq)`` with halves rounded up.

    Integer arithmetic, so it is exact for any tick.

    Returns:
        int64 array of the same shape (or an int for an int).
    """
    t = np.asarray(ticks, np.int64)
    steps = (2 * t * steps_per_beat + ticks_per_quarter) // (2 * ticks_per_quarter)
    return int(steps) if np.ndim(ticks) == 0 else steps


def midi_to_roll(
    source: MidiSource | Score,
    spec: RollSpec | None = None,
    *,
    parser: str = "symusic",
) -> Roll:
    """Read a MIDI file (or take a parsed Score) and lay it on the grid.

    Args:
        source: A path, the file's bytes, or a :class:`~musicpairs.midi.Score`.
        spec: The grid (default ``RollSpec()``: 4 steps per beat).
        parser: The MIDI parser when ``source`` is a file (see ``musicpairs.midi.PARSERS``).

    Returns:
        A :class:`Roll` with ``planes`` uint8 [tracks, 2, 128, T], T the last note's end.

    Raises:
        MidiReadError: The file cannot be read, or is longer than ``spec.max_steps``.
    """
    spec = spec or RollSpec()
    score = source if isinstance(source, Score) else read_midi(source, parser=parser)
    tpq, spb = score.ticks_per_quarter, spec.steps_per_beat

    starts, ends = [], []
    for t in score.tracks:
        s = ticks_to_steps(t.notes.start, tpq, spb)
        starts.append(s)
        ends.append(np.maximum(ticks_to_steps(t.notes.end, tpq, spb), s + 1))
    n_steps = max((int(e.max()) for e in ends if len(e)), default=0)
    if n_steps > spec.max_steps:
        raise MidiReadError(
            score.source,
            f"{n_steps} steps long, over the limit of {spec.max_steps} (RollSpec.max_steps)",
        )

    planes = np.zeros((len(score.tracks), 2, PITCHES, n_steps), np.uint8)
    for k, t in enumerate(score.tracks):
        _paint_track(planes[k], starts[k], ends[k], t.notes.pitch, t.notes.velocity)

    tempos = normalize_tempos(
        [TempoChange(ticks_to_steps(x.time, tpq, spb), x.mspq) for x in score.tempos]
    )
    signatures = normalize_time_signatures(
        [
            TimeSignature(ticks_to_steps(x.time, tpq, spb), x.numerator, x.denominator)
            for x in score.time_signatures
        ]
    )
    infos = tuple(TrackInfo(t.name, t.program, t.is_drum) for t in score.tracks)
    return Roll(planes, infos, tuple(tempos), tuple(signatures), spec, score.source)


def _paint_track(out: np.ndarray, start, end, pitch, velocity) -> None:
    """Write one track's notes (steps) into ``out`` uint8 [2, 128, T], in place."""
    if len(start) == 0:
        return
    n_steps = out.shape[-1]
    order = np.lexsort((start, pitch))
    p, s, e = pitch[order].astype(np.int64), start[order], end[order]
    v = np.maximum(velocity[order], 1).astype(np.uint8)

    # Notes of one pitch starting on one step become one note.
    first = np.ones(len(p), bool)
    first[1:] = (p[1:] != p[:-1]) | (s[1:] != s[:-1])
    idx = np.flatnonzero(first)
    e = np.maximum.reduceat(e, idx)
    v = np.maximum.reduceat(v, idx)
    p, s = p[idx], s[idx]

    # A note ends where the next note of its pitch starts.
    next_start = np.full(len(s), np.iinfo(np.int64).max)
    same = p[1:] == p[:-1]
    next_start[:-1][same] = s[1:][same]
    e = np.minimum(e, next_start)

    onset = out[ONSET].reshape(-1)
    frame = out[FRAME].reshape(-1)
    onset[p * n_steps + s] = v
    dur = e - s
    owner = np.repeat(np.arange(len(s)), dur)
    offset = np.arange(len(owner)) - np.repeat(np.cumsum(dur) - dur, dur)
    frame[p[owner] * n_steps + s[owner] + offset] = v[owner]


# --------------------------------------------------------------------------------------
# Decoding


def planes_to_notes(planes: np.ndarray) -> Notes:
    """Decode one track's planes into notes.

    A note starts at each onset, and at each frame run that begins without one (a window
    cut mid-note); it lasts until the frame stops or the next onset of its pitch. Its
    velocity is the onset's (the frame's where there is no onset).

    Args:
        planes: uint8 [2, 128, T].

    Returns:
        :class:`Notes` with times in steps, ordered by pitch then start.
    """
    onset, frame = planes[ONSET], planes[FRAME]
    n_steps = onset.shape[-1]
    sounding = (frame > 0) | (onset > 0)
    previous = np.zeros_like(sounding)
    previous[:, 1:] = sounding[:, :-1]
    starts = (onset > 0) | (sounding & ~previous)
    # A note stops at the first later step that is silent or starts another note.
    stops = ~sounding | starts
    width = n_steps + 1
    stops = np.concatenate([stops, np.ones((PITCHES, 1), bool)], axis=1).reshape(-1)
    stop_positions = np.flatnonzero(stops)
    p, s = np.nonzero(starts)
    flat = p * width + s
    end_flat = stop_positions[np.searchsorted(stop_positions, flat, side="right")]
    e = end_flat - p * width
    v = np.where(onset[p, s] > 0, onset[p, s], frame[p, s])
    return Notes(s.astype(np.int64), e.astype(np.int64), p.astype(np.uint8), v.astype(np.uint8))


def roll_to_score(roll: Roll, ticks_per_quarter: int | None = None) -> Score:
    """Turn a roll back into a Score in ticks.

    Args:
        roll: The roll.
        ticks_per_quarter: Time division of the result; must be a multiple of
            ``steps_per_beat``. Default ``120 * steps_per_beat`` (480 at sixteenths).
    """
    spb = roll.spec.steps_per_beat
    tpq = ticks_per_quarter or 120 * spb
    if tpq % spb:
        raise ValueError(f"ticks_per_quarter {tpq} is not a multiple of steps_per_beat {spb}")
    scale = tpq // spb
    tracks = []
    for k, info in enumerate(roll.tracks):
        n = roll.notes(k)
        notes = Notes(n.start * scale, n.end * scale, n.pitch, n.velocity)
        tracks.append(Track(info.name, info.program, info.is_drum, notes))
    tempos = [TempoChange(x.time * scale, x.mspq) for x in roll.tempos]
    signatures = [
        TimeSignature(x.time * scale, x.numerator, x.denominator) for x in roll.time_signatures
    ]
    return Score(tpq, tracks, tempos, signatures, roll.source)


def roll_to_midi(roll: Roll, path: str | PathLike, ticks_per_quarter: int | None = None) -> Path:
    """Write a roll as a MIDI file that plays at the roll's tempos.

    Reading the file back with :func:`midi_to_roll` and the same spec gives ``roll`` again.

    Returns:
        The path written.
    """
    return write_midi(roll_to_score(roll, ticks_per_quarter), path)


# --------------------------------------------------------------------------------------
# Bars


def downbeat_steps(
    signatures: tuple[TimeSignature, ...] | list[TimeSignature], n_steps: int, steps_per_beat: int
) -> np.ndarray:
    """Steps at which bars start, before ``n_steps``.

    Each signature starts a bar at its own step; its bars last
    ``numerator * 4 / denominator`` beats, and fractional positions round half up.

    Returns:
        int64 [bars], strictly increasing.
    """
    out = []
    sigs = sorted(signatures, key=lambda x: x.time)
    for i, sig in enumerate(sigs):
        stop = min(sigs[i + 1].time if i + 1 < len(sigs) else n_steps, n_steps)
        if sig.time >= stop:
            continue
        # bar = num * 4 * spb / den steps, kept as the exact fraction a / b.
        a, b = sig.numerator * 4 * steps_per_beat, sig.denominator
        count = -(-(stop - sig.time) * b // a)  # ceil
        k = np.arange(count, dtype=np.int64)
        pos = (2 * (sig.time * b + k * a) + b) // (2 * b)
        out.append(pos[pos < stop])
    if not out:
        return np.zeros(0, np.int64)
    return np.unique(np.concatenate(out))
