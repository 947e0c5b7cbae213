"""Notes on the beat grid, exactly as a roll's planes hold them, and painting them.

``midi_to_roll`` (``roll.py``) turns a score's ticks into grid steps; :func:`grid_notes`
makes those notes disjoint per track and pitch by the data contract's rules (notes
starting together merge, a note is cut where the next of its pitch starts), so painting
them gives the planes and decoding the planes gives them back. Roles, the melody and
merged channels are computed from these notes, without scanning 128 x T cells per track.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from musicpairs.midi import Notes

PITCHES = 128


@dataclass(eq=False)
class GridNotes:
    """The notes of a whole roll on the grid, exactly as its planes hold them.

    Within a track and pitch the notes are disjoint (merged and cut as the module
    docstring says), so painting them gives the planes and decoding the planes gives
    them back: a roll's notes without scanning its 128 x T cells.

    Attributes:
        track, pitch, start, end: int64 [N], times in steps, ordered by track, pitch,
            then start.
        velocity: uint8 [N], 1-127.
        n_steps: T.
    """

    track: np.ndarray
    pitch: np.ndarray
    start: np.ndarray
    end: np.ndarray
    velocity: np.ndarray
    n_steps: int

    def bounds(self, n_tracks: int) -> np.ndarray:
        """int64 [n_tracks + 1]: track k's notes are ``bounds[k]:bounds[k + 1]``."""
        return np.searchsorted(self.track, np.arange(n_tracks + 1))

    def track_notes(self, k: int) -> Notes:
        """Track k's notes, in steps, ordered by pitch then start (as planes_to_notes)."""
        a, b = np.searchsorted(self.track, [k, k + 1])
        return Notes(self.start[a:b], self.end[a:b], self.pitch[a:b].astype(np.uint8),
                     self.velocity[a:b])

    def track_key(self, k: int) -> bytes:
        """Track k's notes as bytes: equal for equal notes, whatever the time division."""
        a, b = np.searchsorted(self.track, [k, k + 1])
        return b"".join(x[a:b].astype(">i8").tobytes()
                        for x in (self.pitch, self.start, self.end, self.velocity))

    def renumbered(self, rank: np.ndarray) -> GridNotes:
        """The same notes with track k renamed ``rank[k]``, in order again."""
        track = rank[self.track]
        order = np.argsort(track, kind="stable")  # within a track, pitch/start order holds
        return GridNotes(track[order], self.pitch[order], self.start[order], self.end[order],
                         self.velocity[order], self.n_steps)

    def paint_merged(self, tracks: list[int]) -> np.ndarray:
        """These tracks' notes in one channel, the loudest onset and frame of any track
        where they meet (what merging their planes gives).

        Returns:
            uint8 [2, 128, T].
        """
        out = np.zeros((2, PITCHES, self.n_steps), np.uint8)
        mask = np.zeros(int(self.track.max(initial=-1)) + 1, bool)
        mask[[k for k in tracks if k < len(mask)]] = True
        pick = mask[self.track] if len(mask) else np.zeros(0, bool)
        if not pick.any():
            return out
        n_steps = self.n_steps
        pitch, start, end = self.pitch[pick], self.start[pick], self.end[pick]
        velocity = self.velocity[pick]
        flat = out.reshape(-1)
        dur = end - start
        ends = np.cumsum(dur)
        cells = np.repeat((PITCHES + pitch) * n_steps + start - (ends - dur), dur) + np.arange(
            int(ends[-1]))
        onsets, values = pitch * n_steps + start, np.repeat(velocity, dur)
        # Within one track no two notes of a pitch overlap, so each track writes each cell
        # once: track by track, the loudest so far is a gather, a maximum and a scatter.
        note_bounds = np.searchsorted(self.track[pick], np.unique(self.track[pick]))
        cell_bounds = np.append(ends[note_bounds[1:] - 1], len(cells)) if len(
            note_bounds) > 1 else np.array([len(cells)])
        a = c = 0
        for b, d in zip([*note_bounds[1:], len(onsets)], cell_bounds.tolist(), strict=True):
            flat[onsets[a:b]] = np.maximum(flat[onsets[a:b]], velocity[a:b])
            flat[cells[c:d]] = np.maximum(flat[cells[c:d]], values[c:d])
            a, c = b, d
        return out

    def paint(self, planes: np.ndarray) -> None:
        """Write the notes into zeroed ``planes`` uint8 [tracks, 2, 128, T], in place."""
        n_steps = self.n_steps
        key = (self.track * (2 * PITCHES) + self.pitch) * n_steps + self.start
        flat = planes.reshape(-1)
        flat[key] = self.velocity
        dur = self.end - self.start
        # Frame cells: for each note, key + 128*T + 0 .. dur-1.
        shift = key + PITCHES * n_steps - (np.cumsum(dur) - dur)
        flat[np.repeat(shift, dur) + np.arange(int(dur.sum()))] = np.repeat(self.velocity, dur)


def grid_notes(track, start, end, pitch, velocity, n_steps: int) -> GridNotes:
    """Notes in steps made disjoint per track and pitch, as the planes will hold them.

    Args:
        track, start, end: int [N]: each note's track index, first step, end step
            (end > start).
        pitch, velocity: uint8 [N].
        n_steps: T; every end is at most T.
    """
    track = np.asarray(track, np.int64)
    start = np.asarray(start, np.int64)
    if len(start) == 0:
        z = np.zeros(0, np.int64)
        return GridNotes(z, z, z, z, np.zeros(0, np.uint8), n_steps)
    # Sort notes by row (track * 128 + pitch), then start: a stable radix sort by row
    # (numpy's, for 16-bit keys) keeps the order of start within a row. Parsers give
    # each track's notes in time order, and tracks one after the other; otherwise a
    # stable sort by start goes first (nearly sorted input, which timsort exploits).
    row = track * PITCHES + np.asarray(pitch, np.int64)
    if row.max() < 2**15:
        in_time = ((np.diff(start) >= 0) | (np.diff(track) != 0)).all()
        by_start = None if in_time else np.argsort(start, kind="stable")
        row16 = row.astype(np.int16) if in_time else row[by_start].astype(np.int16)
        order = np.argsort(row16, kind="stable")
        if by_start is not None:
            order = by_start[order]
    else:
        order = np.argsort(row * n_steps + start, kind="stable")
    row, s = row[order], start[order]
    e = np.asarray(end, np.int64)[order]
    v = np.maximum(np.asarray(velocity)[order], 1).astype(np.uint8, copy=False)

    # Notes of one row starting on one step become one note: the loudest, the longest.
    key = row * n_steps + s  # non-decreasing
    if not np.diff(key).all():
        first = np.flatnonzero(np.concatenate(([True], np.diff(key) != 0)))
        e = np.maximum.reduceat(e, first)
        v = np.maximum.reduceat(v, first)
        row, s = row[first], s[first]

    # A note ends where the next note of its row starts.
    same_row = row[1:] == row[:-1]
    e[:-1] = np.where(same_row, np.minimum(e[:-1], s[1:]), e[:-1])
    return GridNotes(row >> 7, row & (PITCHES - 1), s, e, v, n_steps)


def _paint(planes: np.ndarray, track, start, end, pitch, velocity) -> None:
    """Write notes (steps) into zeroed ``planes`` uint8 [tracks, 2, 128, T], in place.

    Args:
        planes: The zeroed output.
        track, start, end: int64 [N]: each note's track index, first step, end step.
        pitch, velocity: uint8 [N].
    """
    grid_notes(track, start, end, pitch, velocity, planes.shape[-1]).paint(planes)
