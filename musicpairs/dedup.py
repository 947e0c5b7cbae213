"""Content fingerprints of MIDI files, for grouping near-duplicate files into songs.

A popular song sits in a MIDI collection many times over: re-sequenced, transposed, at
another tempo or time division, with tracks added, dropped or renamed, bars cut. What the
copies keep is the tune. A file's fingerprint is the set of its melodic shingles:

* For every pitched track (no drums, no sound effects), its *top line*: at each onset on
  a grid of sixteenths (so time division and tempo do not matter), its highest note. A
  vocal line is its own top line; a piano part's is mostly its tune. The top line of all
  non-bass tracks merged is one more line, so a solo-piano transcription can meet a band
  arrangement's vocal.
* Repeated pitches are dropped (arrangers re-articulate a held note freely); what is left
  is the line's intervals, clipped to an octave, which a transposition does not change.
* A shingle is 7 consecutive intervals holding at least 4 different values (octave runs,
  trills and two-note figures say little about which song it is). Bass tracks (GM
  programs 32-39) give shingles of their own kind. Each shingle is kept as a 32-bit hash;
  a Lakh file has a few hundred to a few thousand.
* A file that sings its words (a karaoke file, lyric events) adds its lyric shingles:
  runs of 5 words (``lyrics.py``). Versions that share no stretch of tune (a solo-piano
  karaoke arrangement against a band's) still share their words.

Files are grouped by the shingles they share in ``grouping.py``.

Where this is weak, measured (README, "Songs and near-duplicates"): versions that share
no stretch of tune (a solo-piano transcription against a band arrangement with another
melody line) stay apart unless both sing their words, and in a corpus of one style
(POP909's pentatonic ballads, arranged alike) different songs share as many shingles as
Lakh's versions do, so there a corpus's own songs are kept and only near-identical copies
are reported.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from musicpairs.lyrics import lyric_shingles, unique_sorted

SHINGLE_INTERVALS = 7
MIN_DISTINCT_INTERVALS = 4
DEFAULT_THRESHOLD = 24
FINGERPRINT_VERSION = 2  # 2: lyric shingles
_STEPS_PER_BEAT = 4
_BASS_PROGRAMS = range(32, 40)
_EFFECT_PROGRAMS = range(112, 128)
_HASH_MULT = np.uint64(0x9E3779B97F4A7C15)


@dataclass(frozen=True)
class TrackLine:
    """One pitched part for fingerprinting: GM program, onsets in ticks, pitches."""

    program: int
    start: np.ndarray
    pitch: np.ndarray


def top_lines(line: np.ndarray, start: np.ndarray, pitch: np.ndarray,
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The top line of several parts at once: at each onset of a part, its highest note.

    Args:
        line: int64 [N], which part each note is in (0 <= line < 2**16).
        start: int64 [N] grid steps (0 <= start < 2**40). pitch: int64 [N].

    Returns:
        (line, start, pitch), int64 [M] each: the top lines, part after part, in time
        order.
    """
    key = ((line << np.int64(40)) | start) << np.int64(7) | pitch
    # Each part's notes come in time order: a merge sort (timsort) finds those runs.
    key.sort(kind="stable")
    onset = key >> np.int64(7)
    last = np.empty(len(key), bool)             # the highest note of each onset
    np.not_equal(onset[1:], onset[:-1], out=last[:-1])
    last[-1:] = True
    top = key[last]
    return top >> np.int64(47), (top >> np.int64(7)) & np.int64((1 << 40) - 1), \
        top & np.int64(127)


def line_shingles(line: np.ndarray, pitch: np.ndarray, tag: np.ndarray,
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Hashed shingles of lines of pitches (part after part, in time order).

    Args:
        line: int64 [M] part of each note. pitch: int64 [M].
        tag: int64 [parts]: 1 for a bass part (its shingles are of their own kind).

    Returns:
        (uint32 [K] a hash per shingle (7 intervals holding >= 4 distinct values),
        int64 [K] the line it comes from).
    """
    n = SHINGLE_INTERVALS
    steps = np.diff(pitch)
    where = line[1:]
    keep = (steps != 0) & (where == line[:-1])  # repeats dropped, nothing across parts
    steps, where = np.clip(steps[keep], -12, 12) + 12, where[keep]
    k = len(steps) - n + 1
    if k < 1:
        return np.zeros(0, np.uint32), np.zeros(0, np.int64)
    # Seven shifted views of the intervals: exact 5-bit codes and a mask of the values.
    code = tag[where[:k]].astype(np.uint64)
    seen = np.zeros(k, np.uint32)
    for i in range(n):
        part = steps[i : i + k]
        code = (code << np.uint64(5)) | part.astype(np.uint64)
        seen |= np.left_shift(np.uint32(1), part.astype(np.uint32))
    ok = where[:k] == where[n - 1 :]            # the window lies in one part
    ok &= np.bitwise_count(seen) >= MIN_DISTINCT_INTERVALS
    return ((code[ok] * _HASH_MULT) >> np.uint64(32)).astype(np.uint32), where[:k][ok]


def fingerprint_tracks(tracks: Iterable[TrackLine], ticks_per_quarter: int) -> np.ndarray:
    """A file's fingerprint from its pitched tracks (drums already left out).

    Returns:
        uint32 [K]: sorted, unique shingle hashes.
    """
    return fingerprint_files([(list(tracks), ticks_per_quarter)])[0]


# Lines (parts and merged lines) fingerprinted in one pass: top_lines' keys hold 16 bits.
_MAX_LINES = 1 << 15


def fingerprint_files(files: list[tuple[list[TrackLine], int]]) -> list[np.ndarray]:
    """The melodic fingerprints of many files at once, each from its pitched tracks and
    ticks per quarter note: one set of array operations for all of them, not one per
    file, which is most of the cost for files of a few thousand notes.

    Returns:
        uint32 [K_i] per file: sorted, unique shingle hashes.
    """
    out = []
    batch: list[tuple[list[TrackLine], int]] = []
    lines = 0
    for tracks, tpq in files:
        kept = [t for t in tracks
                if t.program not in _EFFECT_PROGRAMS and len(t.pitch) > SHINGLE_INTERVALS]
        if lines + len(kept) + 1 > _MAX_LINES and batch:
            out += _fingerprint_batch(batch)
            batch, lines = [], 0
        batch.append((kept, tpq))
        lines += len(kept) + 1
    return out + (_fingerprint_batch(batch) if batch else [])


def _fingerprint_batch(files: list[tuple[list[TrackLine], int]]) -> list[np.ndarray]:
    parts = [t for tracks, _ in files for t in tracks]
    empty = [np.zeros(0, np.uint32) for _ in files]
    if not parts:
        return empty
    n_parts = np.array([len(tracks) for tracks, _ in files])
    file_of_part = np.repeat(np.arange(len(files)), n_parts)
    size = [len(t.pitch) for t in parts]
    scale = np.array([_STEPS_PER_BEAT / tpq for _, tpq in files])[file_of_part]
    line = np.repeat(np.arange(len(parts)), size)
    start = np.rint(np.concatenate([t.start for t in parts]) * np.repeat(scale, size))
    pitch = np.concatenate([t.pitch for t in parts]).astype(np.int64)
    top_line, top_start, top_pitch = top_lines(line, start.astype(np.int64), pitch)
    # Every part has a line of its own, and each file's non-bass parts one merged line
    # more: the top of their top lines (the highest note of any of them at each onset).
    # A file with one non-bass part has none: it would repeat that part.
    bass = np.array([t.program in _BASS_PROGRAMS for t in parts])
    upper_parts = np.bincount(file_of_part, ~bass, minlength=len(files))
    has_merged = upper_parts > 1
    merged_id = len(parts) + np.cumsum(has_merged) - 1          # per file
    file_of_line = np.r_[file_of_part, np.flatnonzero(has_merged)]
    tag = np.r_[bass, np.zeros(int(has_merged.sum()), bool)].astype(np.int64)
    upper = ~bass[top_line] & has_merged[file_of_part[top_line]]
    if upper.any():
        merged = top_lines(merged_id[file_of_part[top_line[upper]]], top_start[upper],
                           top_pitch[upper])
        top_line = np.concatenate([top_line, merged[0]])
        top_pitch = np.concatenate([top_pitch, merged[2]])
    shingles, from_line = line_shingles(top_line, top_pitch, tag)
    # Each file's shingles together (a radix sort of small file numbers: a batch has fewer
    # than 2**15 files), then sorted file by file: 4x faster than one 64-bit sort.
    owner = file_of_line[from_line].astype(np.int16)
    order = np.argsort(owner, kind="stable")
    shingles = shingles[order]
    cut = np.searchsorted(owner[order], np.arange(len(files) + 1))
    return [unique_sorted(np.sort(shingles[cut[i] : cut[i + 1]])) for i in range(len(files))]


def fingerprint_score(score) -> np.ndarray:
    """The melodic fingerprint of a :class:`musicpairs.midi.Score` (any parser); lyric
    shingles need the file's bytes (``fingerprint_midi``).

    Returns:
        uint32 [K]: sorted, unique shingle hashes.
    """
    lines = (TrackLine(t.program, t.notes.start, t.notes.pitch)
             for t in score.tracks if not t.is_drum)
    return fingerprint_tracks(lines, score.ticks_per_quarter)


def midi_track_lines(data: bytes, name: str = "") -> tuple[list[TrackLine], int]:
    """The pitched tracks of MIDI bytes and their ticks per quarter note, parsed by
    symusic without building a Score.

    Raises:
        MidiReadError: The bytes are not a MIDI file symusic can read.
    """
    import symusic

    from musicpairs.errors import MidiReadError
    from musicpairs.midi import check_midi_bytes

    check_midi_bytes(data, name)
    try:
        score = symusic.Score.from_midi(data)
    except Exception as e:  # noqa: BLE001 - symusic raises bare RuntimeErrors
        raise MidiReadError(name, f"symusic could not parse it: {e}") from e
    tpq = int(score.ticks_per_quarter)
    if tpq <= 0:
        raise MidiReadError(name, f"time division {tpq} is not ticks per quarter note")
    lines = []
    for t in score.tracks:
        if t.is_drum or not len(t.notes):
            continue
        arr = t.notes.numpy()
        lines.append(TrackLine(int(t.program), arr["time"], arr["pitch"]))
    return lines, tpq


def fingerprint_midi(data: bytes, name: str = "", lyrics: bool = True) -> np.ndarray:
    """The fingerprint of MIDI bytes: its melodic shingles and (``lyrics``) its lyric
    shingles (``lyrics.py``).

    Raises:
        MidiReadError: The bytes are not a MIDI file symusic can read.

    Returns:
        uint32 [K]: sorted, unique shingle hashes.
    """
    melodic = fingerprint_tracks(*midi_track_lines(data, name))
    if not lyrics:
        return melodic
    return with_words(melodic, lyric_shingles(data))


def with_words(melodic: np.ndarray, words: np.ndarray) -> np.ndarray:
    """uint32 [K]: a file's melodic and lyric shingles, sorted and unique."""
    if not len(words):
        return melodic
    both = np.concatenate([melodic, words])
    both.sort()
    return unique_sorted(both)
