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
from musicpairs.grid import PITCHES, GridNotes, _paint, grid_notes  # noqa: F401 - _paint re-exported
from musicpairs.midi import (
    MidiSource,
    Notes,
    Score,
    TempoChange,
    TimeSignature,
    Track,
    canonical_track_order,
    normalize_tempos,
    normalize_time_signatures,
    read_midi,
    write_midi,
)

ONSET, FRAME = 0, 1


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
        score_tracks: For each roll track, the index of its track in the Score it was
            made from (rolls order same-named tracks by their quantized notes; not compared).
    """

    planes: np.ndarray
    tracks: tuple[TrackInfo, ...]
    tempos: tuple[TempoChange, ...]
    time_signatures: tuple[TimeSignature, ...]
    spec: RollSpec = field(default_factory=RollSpec)
    source: str = ""
    score_tracks: tuple[int, ...] | None = None

    def __post_init__(self):
        if self.planes is None:  # see _from_grid
            raise ValueError("planes must be uint8 [tracks, 2, 128, T], got None")
        if self.planes.dtype != np.uint8 or self.planes.ndim != 4:
            raise ValueError(f"planes must be uint8 [tracks, 2, 128, T], got "
                             f"{self.planes.dtype} {self.planes.shape}")
        if self.planes.shape[1:3] != (2, PITCHES) or self.planes.shape[0] != len(self.tracks):
            raise ValueError(f"planes shape {self.planes.shape} does not fit "
                             f"{len(self.tracks)} tracks x 2 planes x 128 pitches")
        self.tracks = tuple(self.tracks)
        self.tempos = tuple(self.tempos)
        self.time_signatures = tuple(self.time_signatures)
        if self.score_tracks is None:
            self.score_tracks = tuple(range(len(self.tracks)))

    @classmethod
    def _from_grid(cls, grid: GridNotes, tracks, tempos, time_signatures, spec, source,
                   score_tracks) -> Roll:
        """A roll whose planes are painted from its grid notes when first read.

        A build reads most songs through their notes alone (roles, the melody and the
        merged accompaniment are painted from them): a Lakh song's full planes are ~4 MB
        that nothing else would touch.
        """
        roll = cls.__new__(cls)
        roll.__dict__.update(tracks=tuple(tracks), tempos=tuple(tempos),
                             time_signatures=tuple(time_signatures), spec=spec,
                             source=source, score_tracks=tuple(score_tracks), _grid=grid)
        return roll

    def __getattr__(self, name: str):
        # Only called for attributes not set: the planes of a roll made by _from_grid.
        if name == "planes" and "_grid" in self.__dict__:
            planes = np.zeros((len(self.tracks), 2, PITCHES, self._grid.n_steps), np.uint8)
            self._grid.paint(planes)
            self.planes = planes
            return planes
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def n_steps(self) -> int:
        """T, the length in grid steps."""
        planes = self.__dict__.get("planes")
        return planes.shape[-1] if planes is not None else self._grid.n_steps

    def merged(self, tracks: list[int]) -> np.ndarray:
        """Tracks merged into one channel: the loudest onset and frame of any track.

        Returns:
            uint8 [2, 128, T] (zeros when ``tracks`` is empty).
        """
        planes = self.__dict__.get("planes")
        if planes is None:  # painted from the notes, without the whole roll
            return self._grid.paint_merged(tracks)
        out = np.zeros((2, PITCHES, self.n_steps), np.uint8)
        for k in tracks:
            np.maximum(out, planes[k], out=out)
        return out

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
        grid = self.__dict__.get("_grid")
        if grid is not None:
            return grid.track_notes(track)
        return planes_to_notes(self.planes[track])

    def grid(self) -> GridNotes:
        """Every track's notes on the grid: kept by :func:`midi_to_roll`, which found them
        before painting the planes; else decoded from the planes once."""
        grid = self.__dict__.get("_grid")
        if grid is None:
            notes = [self.notes(k) for k in range(len(self.tracks))]
            counts = [len(n) for n in notes]
            grid = GridNotes(
                np.repeat(np.arange(len(notes), dtype=np.int64), counts),
                _concat([n.pitch.astype(np.int64) for n in notes]),
                _concat([n.start for n in notes]), _concat([n.end for n in notes]),
                _concat([n.velocity for n in notes]).astype(np.uint8), self.n_steps)
            self._grid = grid
        return grid


# --------------------------------------------------------------------------------------
# Encoding


def ticks_to_steps(ticks: np.ndarray | int, ticks_per_quarter: int, steps_per_beat: int):
    """Grid step of each tick: ``round(tick * spb / tpq)`` with halves rounded up.

    Integer arithmetic in int64, so it is exact for any tick.

    Returns:
        int64 array of the same shape (or an int for an int).
    """
    if isinstance(ticks, int | np.integer):  # tempo and meter events: plain ints are faster
        return (2 * int(ticks) * steps_per_beat + ticks_per_quarter) // (2 * ticks_per_quarter)
    t = np.asarray(ticks, np.int64)
    if ticks_per_quarter % (2 * steps_per_beat) == 0:  # the usual case (480 / 8): one add
        ticks_per_step = ticks_per_quarter // steps_per_beat
        return (t + ticks_per_step // 2) // ticks_per_step
    return (2 * t * steps_per_beat + ticks_per_quarter) // (2 * ticks_per_quarter)


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
    score = (source if isinstance(source, Score)
             else read_midi(source, parser=parser, canonical_order=False))
    tpq, spb = score.ticks_per_quarter, spec.steps_per_beat

    # All tracks at once: one sort and one scatter per song, not per track.
    counts = [len(t.notes) for t in score.tracks]
    n = sum(counts)
    ticks = _concat([t.notes.start for t in score.tracks] + [t.notes.end for t in score.tracks])
    steps = ticks_to_steps(ticks, tpq, spb)
    start, end = steps[:n], np.maximum(steps[n:], steps[:n] + 1)
    n_steps = int(end.max()) if n else 0
    if n_steps > spec.max_steps:
        raise MidiReadError(
            score.source,
            f"{n_steps} steps long, over the limit of {spec.max_steps} (RollSpec.max_steps)",
        )
    size = len(score.tracks) * 2 * PITCHES * n_steps
    if size > spec.max_roll_bytes:
        raise MidiReadError(
            score.source, f"its roll would take {size / 2**20:.0f} MiB, over the limit of "
            f"{spec.max_roll_bytes / 2**20:.0f} MiB (RollSpec.max_roll_bytes)")
    track = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    pitch = _concat([t.notes.pitch for t in score.tracks])
    velocity = _concat([t.notes.velocity for t in score.tracks])
    grid = grid_notes(track, start, end, pitch, velocity, n_steps)

    tempos = normalize_tempos(
        [TempoChange(ticks_to_steps(x.time, tpq, spb), x.mspq) for x in score.tempos])
    signatures = normalize_time_signatures(
        [x._replace(time=ticks_to_steps(x.time, tpq, spb)) for x in score.time_signatures])
    infos = [TrackInfo(t.name, t.program, t.is_drum) for t in score.tracks]
    # Same-named tracks are ordered by what the roll holds, not by ticks: a roll written
    # at another time division and read back lists them in the same order. The grid
    # notes are exactly what the planes decode to, so the order is found before painting.
    order = canonical_track_order([(i.name, i.is_drum, i.program) for i in infos],
                                  grid.track_key)
    if order != list(range(len(infos))):
        rank = np.empty(len(order), np.int64)
        rank[order] = np.arange(len(order))
        grid = grid.renumbered(rank)
        infos = [infos[k] for k in order]
    return Roll._from_grid(grid, infos, tempos, signatures, spec, score.source, order)


def _concat(arrays: list[np.ndarray]) -> np.ndarray:
    if not arrays:
        return np.zeros(0, np.int64)
    return np.concatenate(arrays) if len(arrays) > 1 else arrays[0]


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


def planes_to_layers(planes: np.ndarray) -> list[Notes]:
    """Decode planes exactly, as layers of notes whose rolls merged give ``planes``.

    :func:`planes_to_notes` gives one track's notes, which is exact for a roll of one
    track. Windows of merged channels hold more than one track can: notes of several
    tracks overlapping on one pitch with other velocities, and notes already sounding at
    step 0. This finds notes for those too: each layer is a track (no two notes of one
    pitch overlap in it), and encoding every layer and merging them with the loudest
    onset and frame (as ``musicpairs.pairing.merge_tracks`` does) gives ``planes``.

    A note that must sound before step 0 (the frame runs from step 0 with no onset
    there) starts at step -1; whoever writes the notes gives them room before the start.

    Args:
        planes: uint8 [2, 128, T].

    Returns:
        The layers, each :class:`Notes` in steps (the first holds most notes).

    Raises:
        ValueError: No notes give these planes: an onset louder than its frame, or a
            frame that gets louder where no note starts as loud.
    """
    onset, frame = planes[ONSET].astype(np.int64), planes[FRAME].astype(np.int64)
    bad = np.argwhere(onset > frame)
    if len(bad):
        p, t = bad[0]
        raise ValueError(f"pitch {p}, step {t}: onset {onset[p, t]} is louder than its frame "
                         f"{frame[p, t]}")
    layer_ends: list[np.ndarray] = []  # per layer: the end of its last note, per pitch
    layers: list[list[tuple[int, int, int, int]]] = []  # (start, end, pitch, velocity)
    for p in np.flatnonzero(frame.any(axis=1)):
        o, f = onset[p], frame[p]
        notes = []
        # One note per run of one frame value, started where it can be: at the latest
        # step at or before the run whose onset is at least as loud, with the frame at
        # least as loud all the way; before step 0 when the frame reaches back to it.
        bounds = np.flatnonzero(np.diff(f, prepend=0, append=0))
        for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
            v = int(f[a])
            if v == 0:
                continue
            quieter = np.flatnonzero(f[:a] < v)
            reach = int(quieter[-1]) + 1 if len(quieter) else 0
            loud = np.flatnonzero(o[reach : a + 1] >= v)
            if len(loud):
                start = reach + int(loud[-1])
            elif reach == 0:
                start = -1
            else:
                raise ValueError(f"pitch {p}, step {a}: the frame rises to {v} where no note "
                                 "starts as loud")
            notes.append((start, b, v))
        # Every onset needs a note starting with exactly its velocity.
        have = {(s, v) for s, _, v in notes}
        notes += [(t, t + 1, int(o[t])) for t in np.flatnonzero(o).tolist()
                  if (t, int(o[t])) not in have]
        # Overlapping notes of this pitch go to different layers.
        for s, e, v in sorted(notes, key=lambda n: (n[0], -n[1])):
            k = next((k for k, ends in enumerate(layer_ends) if ends[p] <= s), None)
            if k is None:
                k = len(layers)
                layers.append([])
                layer_ends.append(np.full(PITCHES, -(2**62), np.int64))
            layers[k].append((s, e, int(p), v))
            layer_ends[k][p] = e
    out = []
    for layer in layers:
        s, e, p, v = (np.array(x, np.int64) for x in zip(*layer, strict=True))
        out.append(Notes(s, e, p.astype(np.uint8), v.astype(np.uint8)))
    return out


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
    steps = np.concatenate(out)
    # Segments are disjoint and ordered; only bars shorter than a step repeat a position.
    return steps if (np.diff(steps) > 0).all() else np.unique(steps)
