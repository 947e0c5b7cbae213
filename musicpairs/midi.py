"""Read MIDI files into one score type, with any of three parsers, and write them back.

The parsers are ``symusic`` (default, a C++ parser), ``pretty_midi`` and ``miditoolkit``.
Each is turned into the same :class:`Score`, in MIDI ticks, and normalized the same way
(see :func:`_finish_score`), so that the three give identical scores on well-formed files.

Where they legitimately differ, it is the parser's documented behaviour:

* pretty_midi reads tempo changes from the first track only (the SMF type-1 convention);
  symusic and miditoolkit read them from every track.
* pretty_midi ends every sounding note of a pitch and channel at one note-off; symusic and
  miditoolkit end the oldest one (first in, first out). Files with overlapping notes of the
  same pitch on one channel therefore decode differently.
* pretty_midi drops notes whose note-off falls on the note-on's tick; the other two keep
  them with zero length (a roll gives them one step).
"""

from __future__ import annotations

import io
import re
import struct
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import NamedTuple

import numpy as np

from musicpairs.errors import MidiReadError

PARSERS = ("symusic", "pretty_midi", "miditoolkit")
DEFAULT_MSPQ = 500_000  # 120 quarter notes per minute: the MIDI default tempo

MidiSource = str | PathLike | bytes


class TempoChange(NamedTuple):
    """A tempo from ``time`` on, in microseconds per quarter note (as MIDI stores it).

    ``time`` is in ticks in a :class:`Score` and in grid steps in a ``Roll``. (A named
    tuple: songs carry many of these and they are made per file.)
    """

    time: int
    mspq: int

    @property
    def qpm(self) -> float:
        """Quarter notes per minute."""
        return 60_000_000 / self.mspq


class TimeSignature(NamedTuple):
    """A meter from ``time`` on (ticks in a Score, steps in a Roll); a bar starts there."""

    time: int
    numerator: int
    denominator: int

    def bar_quarters(self) -> float:
        """Length of one bar in quarter notes."""
        return self.numerator * 4 / self.denominator


@dataclass(eq=False)
class Notes:
    """The notes of a track as parallel arrays.

    Attributes:
        start: int [N] (int64, or int32 from symusic), note-on tick.
        end: int [N], note-off tick (>= start).
        pitch: uint8 [N], MIDI number 0-127.
        velocity: uint8 [N], 1-127.
    """

    start: np.ndarray
    end: np.ndarray
    pitch: np.ndarray
    velocity: np.ndarray

    def __len__(self) -> int:
        return len(self.start)

    @classmethod
    def empty(cls) -> Notes:
        i64 = np.zeros(0, np.int64)
        u8 = np.zeros(0, np.uint8)
        return cls(i64, i64.copy(), u8, u8.copy())

    def sorted(self) -> Notes:
        """The same notes ordered by start, then pitch, then end."""
        order = np.lexsort((self.end, self.pitch, self.start))
        return Notes(self.start[order], self.end[order], self.pitch[order], self.velocity[order])

    def equals(self, other: Notes) -> bool:
        a, b = self.sorted(), other.sorted()
        ours = (a.start, a.end, a.pitch, a.velocity)
        theirs = (b.start, b.end, b.pitch, b.velocity)
        return all(np.array_equal(x, y) for x, y in zip(ours, theirs, strict=True))


@dataclass(eq=False)
class Track:
    """One instrument part: a name, a General MIDI program, a drum flag and its notes."""

    name: str
    program: int
    is_drum: bool
    notes: Notes


@dataclass(eq=False)
class Score:
    """A parsed MIDI file in ticks.

    Attributes:
        ticks_per_quarter: The file's time division (> 0).
        tracks: Tracks that hold notes, in canonical order (see ``_canonical_order``).
        tempos: Tempo changes, sorted, the first at tick 0.
        time_signatures: Meter changes, sorted, the first at tick 0.
        source: Where the score came from, for messages.
    """

    ticks_per_quarter: int
    tracks: list[Track]
    tempos: list[TempoChange] = field(default_factory=lambda: [TempoChange(0, DEFAULT_MSPQ)])
    time_signatures: list[TimeSignature] = field(
        default_factory=lambda: [TimeSignature(0, 4, 4)]
    )
    source: str = ""

    @property
    def end_tick(self) -> int:
        """The tick at which the last note ends (0 for a score without notes)."""
        ends = [int(t.notes.end.max()) for t in self.tracks if len(t.notes)]
        return max(ends, default=0)

    def note_count(self) -> int:
        return sum(len(t.notes) for t in self.tracks)


# --------------------------------------------------------------------------------------
# Reading


def read_midi(source: MidiSource, *, parser: str = "symusic", name: str | None = None,
              canonical_order: bool = True) -> Score:
    """Read a MIDI file with one of the supported parsers.

    Args:
        source: A path, or the file's bytes.
        parser: ``"symusic"`` (default), ``"pretty_midi"`` or ``"miditoolkit"``.
        name: How to call the file in messages (defaults to the path, or ``"<bytes>"``).
        canonical_order: Put tracks in canonical order (see ``canonical_track_order``).
            False leaves them in the parser's order: for a score that only goes on to
            :func:`musicpairs.roll.midi_to_roll`, which orders tracks on the grid itself.

    Returns:
        The normalized :class:`Score`.

    Raises:
        MidiReadError: The file is missing, empty, truncated, not MIDI, has a zero or
            SMPTE time division, holds out-of-range data, or its parser failed on it.
        ValueError: ``parser`` is not one of :data:`PARSERS`.
    """
    if parser not in PARSERS:
        raise ValueError(f"unknown MIDI parser {parser!r}; choose one of {', '.join(PARSERS)}")
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        label = name or "<bytes>"
    else:
        label = name or str(source)
        try:
            with open(source, "rb") as fh:  # noqa: PTH123 - cheaper than Path() per file
                data = fh.read()
        except OSError as e:
            raise MidiReadError(label, f"cannot open: {e.strerror or e}") from e
    check_midi_bytes(data, label)
    reader = _READERS[parser]
    try:
        if parser == "symusic":  # it does not warn; catch_warnings costs ~5 % of a read
            tpq, tracks, tempos, signatures = reader(data)
        else:
            with warnings.catch_warnings():
                # pretty_midi warns on tempo events outside track 0 (documented above).
                warnings.simplefilter("ignore")
                tpq, tracks, tempos, signatures = reader(data)
    except _RangeError as e:
        raise MidiReadError(label, str(e)) from e
    except Exception as e:  # noqa: BLE001 - any parser failure is a property of the file
        raise MidiReadError(label, f"{parser} could not parse it: {_describe(e)}") from e
    return _finish_score(tpq, tracks, tempos, signatures, label, canonical_order)


def check_midi_bytes(data: bytes, label: str) -> None:
    """Check the Standard MIDI File framing: header, time division, chunk lengths.

    This is the part of validation every parser gets wrong in its own way (one divides
    by zero, one silently accepts 0 ticks per quarter), so it is done once, here, in
    O(number of chunks).

    Raises:
        MidiReadError: The reason the bytes are not a usable MIDI file.
    """
    if len(data) == 0:
        raise MidiReadError(label, "empty file")
    if data[:4] != b"MThd":
        raise MidiReadError(label, "not a MIDI file (no MThd header)")
    if len(data) < 14:
        raise MidiReadError(label, f"truncated: {len(data)} bytes, shorter than a MIDI header")
    header_len, fmt, ntracks, division = struct.unpack(">IHHH", data[4:14])
    if header_len < 6:
        raise MidiReadError(label, f"corrupt header: length {header_len} < 6")
    if fmt > 2:
        raise MidiReadError(label, f"unknown MIDI format {fmt}")
    if division & 0x8000:
        raise MidiReadError(label, "SMPTE time division is not supported (only ticks per quarter)")
    if division == 0:
        raise MidiReadError(label, "0 ticks per quarter note")
    pos = 8 + header_len
    found = 0
    while pos + 8 <= len(data) and found < ntracks:
        kind = data[pos : pos + 4]
        (length,) = struct.unpack(">I", data[pos + 4 : pos + 8])
        if pos + 8 + length > len(data):
            raise MidiReadError(
                label,
                f"truncated: chunk {kind!r} at byte {pos} claims {length} bytes, "
                f"{len(data) - pos - 8} remain",
            )
        found += kind == b"MTrk"
        pos += 8 + length
    if found < ntracks:
        raise MidiReadError(
            label, f"truncated: header announces {ntracks} tracks, the file holds {found}"
        )


def _describe(e: BaseException) -> str:
    text = str(e).strip().replace("\n", " ")
    # symusic reports a data byte > 127 as the value it decoded ("Get pitch=188").
    m = re.search(r"\bGet (pitch|velocity)=(-?\d+)", text)
    if m:
        return f"a data byte > 127 where a note {m[1]} belongs ({m[1]}={m[2]})"
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _read_symusic(data: bytes):
    import symusic

    score = symusic.Score.from_midi(data)
    tracks = []
    for t in score.tracks:
        notes = t.notes
        if not len(notes):  # lyric and controller tracks: dropped by _finish_score anyway
            continue
        arr = notes.numpy()
        # symusic keeps pitch and velocity as int8: a data byte > 127 comes out negative
        # (0.6 refuses it itself, "Get pitch=188"). Ticks stay int32 until the roll
        # needs int64.
        if np.bitwise_or(arr["pitch"], arr["velocity"]).min() < 0:  # one pass, not four
            _check_range(arr["pitch"], arr["velocity"])
        start = arr["time"]
        notes = Notes(start, np.add(start, arr["duration"]), arr["pitch"].view(np.uint8),
                      arr["velocity"].view(np.uint8))
        tracks.append(Track(t.name, int(t.program), bool(t.is_drum), notes))
    t = score.tempos.numpy()
    tempos = list(map(TempoChange, t["time"].tolist(), t["mspq"].tolist()))
    m = score.time_signatures.numpy()
    signatures = list(map(TimeSignature, m["time"].tolist(), m["numerator"].tolist(),
                          m["denominator"].tolist()))
    return int(score.ticks_per_quarter), tracks, tempos, signatures


def _read_pretty_midi(data: bytes):
    import pretty_midi

    pm = pretty_midi.PrettyMIDI(io.BytesIO(data))
    to_ticks = _seconds_to_ticks_fn(pm)
    tracks = [_mido_track(inst, np.float64, to_ticks) for inst in pm.instruments]
    times, bpms = pm.get_tempo_changes()
    tempos = [TempoChange(int(t), round(60_000_000 / b))
              for t, b in zip(to_ticks(times).tolist(), bpms, strict=True)]
    sigs = pm.time_signature_changes
    sig_ticks = to_ticks(np.array([x.time for x in sigs], np.float64)).tolist()
    signatures = [TimeSignature(t, int(x.numerator), int(x.denominator))
                  for t, x in zip(sig_ticks, sigs, strict=True)]
    return int(pm.resolution), tracks, tempos, signatures


def _seconds_to_ticks_fn(pm):
    """Invert pretty_midi's tick->seconds map using only its public tempo changes.

    Between tempo changes the map is linear, so a time converts back to the file's tick
    exactly (the float error is far below half a tick).
    """
    times, bpms = pm.get_tempo_changes()
    ticks_per_second = np.asarray(bpms, np.float64) * pm.resolution / 60.0
    anchors = np.zeros(len(times), np.float64)
    for i in range(1, len(times)):
        anchors[i] = anchors[i - 1] + (times[i] - times[i - 1]) * ticks_per_second[i - 1]

    def to_ticks(seconds: np.ndarray) -> np.ndarray:
        seconds = np.asarray(seconds, np.float64)
        idx = np.clip(np.searchsorted(times, seconds, side="right") - 1, 0, None)
        ticks = anchors[idx] + (seconds - times[idx]) * ticks_per_second[idx]
        return np.rint(ticks).astype(np.int64)

    return to_ticks


def _read_miditoolkit(data: bytes):
    import miditoolkit

    mf = miditoolkit.MidiFile(file=io.BytesIO(data))
    tracks = [_mido_track(inst, np.int64, lambda ticks: ticks) for inst in mf.instruments]
    tempos = [TempoChange(int(x.time), round(60_000_000 / x.tempo)) for x in mf.tempo_changes]
    signatures = [
        TimeSignature(int(x.time), int(x.numerator), int(x.denominator))
        for x in mf.time_signature_changes
    ]
    return int(mf.ticks_per_beat), tracks, tempos, signatures


def _mido_track(inst, time_dtype, to_ticks) -> Track:
    """A Track from a pretty_midi or miditoolkit instrument (both parse with mido).

    Args:
        inst: The instrument; its notes have start, end, pitch, velocity.
        time_dtype: float64 for pretty_midi's seconds, int64 for miditoolkit's ticks.
        to_ticks: Maps an array of those times to int64 ticks.
    """
    n = len(inst.notes)
    start = np.fromiter((x.start for x in inst.notes), time_dtype, n)
    end = np.fromiter((x.end for x in inst.notes), time_dtype, n)
    pitch = np.fromiter((x.pitch for x in inst.notes), np.int64, n)
    velocity = np.fromiter((x.velocity for x in inst.notes), np.int64, n)
    _check_range(pitch, velocity)
    notes = Notes(to_ticks(start), to_ticks(end), pitch.astype(np.uint8),
                  velocity.astype(np.uint8))
    return Track(_utf8_name(inst.name), int(inst.program), bool(inst.is_drum), notes)


def _utf8_name(name: str) -> str:
    """A track name as symusic reads it: the raw bytes as UTF-8, bad bytes as U+FFFD.

    mido (under pretty_midi and miditoolkit) decodes names as latin-1, which keeps the
    raw bytes; decoding those as UTF-8 makes the three parsers agree on every name.
    """
    try:
        raw = name.encode("latin-1")
    except UnicodeEncodeError:
        return name
    return raw.decode("utf-8", errors="replace")


_READERS = {
    "symusic": _read_symusic,
    "pretty_midi": _read_pretty_midi,
    "miditoolkit": _read_miditoolkit,
}


class _RangeError(Exception):
    pass


def _check_range(pitch: np.ndarray, velocity: np.ndarray) -> None:
    if len(pitch) and (pitch.min() < 0 or pitch.max() > 127):
        raise _RangeError("a note pitch is outside 0..127 (a data byte > 127)")
    if len(velocity) and (velocity.min() < 0 or velocity.max() > 127):
        raise _RangeError("a note velocity is outside 0..127 (a data byte > 127)")


def _finish_score(tpq, tracks, tempos, signatures, label, canonical_order=True) -> Score:
    """Normalize a parser's output so that every parser gives the same Score.

    * Tracks without notes are dropped (pretty_midi and miditoolkit never make them).
    * Tempo: 120 qpm applies until the first tempo event; of several events on one tick
      the last wins; an event repeating the tempo in force is dropped (pretty_midi does
      not keep those).
    * Meter: 4/4 applies until the first time signature; of several on one tick the last
      wins. A repeated identical signature is kept: it starts a new bar.
    * Tracks are put in canonical order (see ``_canonical_order``).
    """
    # check_midi_bytes has refused a zero or SMPTE division before any parser ran.
    # Every parser pairs a note-off after its note-on, so start >= 0 and end >= start.
    kept = [t for t in tracks if len(t.notes)]

    for t in tempos:
        if t.mspq <= 0:
            raise MidiReadError(label, f"tempo of {t.mspq} microseconds per quarter")
    for x in signatures:
        if x.numerator <= 0 or x.denominator <= 0:
            raise MidiReadError(label, f"time signature {x.numerator}/{x.denominator}")
    clean_tempos = normalize_tempos(tempos)
    clean_sigs = normalize_time_signatures(signatures)
    return Score(tpq, _canonical_order(kept) if canonical_order else kept, clean_tempos,
                 clean_sigs, label)


def normalize_tempos(tempos: list[TempoChange]) -> list[TempoChange]:
    """120 qpm until the first change; the last of several at one time wins; repeats go.

    Works in any time unit (ticks or steps); the input need not be sorted.
    """
    by_time: dict[int, int] = {0: DEFAULT_MSPQ}
    for t in sorted(tempos, key=lambda x: x.time):  # stable: file order breaks ties
        by_time[t.time] = t.mspq
    out: list[TempoChange] = []
    for time, mspq in sorted(by_time.items()):
        if not out or out[-1].mspq != mspq:
            out.append(TempoChange(time, mspq))
    return out


def normalize_time_signatures(signatures: list[TimeSignature]) -> list[TimeSignature]:
    """4/4 until the first signature; the last of several at one time wins.

    A repeated identical signature is kept: it starts a new bar where it stands.
    """
    by_time: dict[int, TimeSignature] = {0: TimeSignature(0, 4, 4)}
    for x in sorted(signatures, key=lambda x: x.time):
        by_time[x.time] = x
    return [by_time[k] for k in sorted(by_time)]


def notes_order_key(notes: Notes) -> bytes:
    """A sort key that orders note lists as tuples of (start, pitch, end, velocity) rows.

    Big-endian fixed-width integers compare bytewise in numeric order, so comparing keys
    is comparing the notes, sorted, row by row.
    """
    n = notes.sorted()
    rows = np.stack([n.start, n.pitch.astype(np.int64), n.end, n.velocity.astype(np.int64)], 1)
    return (rows + (1 << 62)).astype(">i8").tobytes()  # offset: negative values sort first


def canonical_track_order(heads: list[tuple[str, bool, int]],
                          notes_key: Callable[[int], bytes]) -> list[int]:
    """The order in which tracks are listed, the same whichever parser read them.

    Parsers split a MIDI track by channel and program, and each orders the parts its own
    way; all of them keep the file's order of tracks. So tracks are grouped by name, the
    groups in order of first appearance (the file's order when names differ), and ordered
    within a group by drum flag, program, then notes.

    Args:
        heads: (name, is_drum, program) of each track.
        notes_key: A key of track k's notes, equal exactly when the notes are equal
            (such as :func:`notes_order_key`). Called only for tracks that share all
            three with another track (Lakh files repeat empty names; their programs
            mostly differ).

    Returns:
        Indices into ``heads``, in canonical order.
    """
    first_seen: dict[str, int] = {}
    for name, *_ in heads:
        first_seen.setdefault(name, len(first_seen))
    if len(first_seen) == len(heads):  # names are unique: the order is already canonical
        return list(range(len(heads)))
    shared = Counter(heads)
    keys = [(first_seen[h[0]], h[1], h[2],
             notes_key(k) if shared[h] > 1 else b"")
            for k, h in enumerate(heads)]
    return sorted(range(len(heads)), key=keys.__getitem__)


def _canonical_order(tracks: list[Track]) -> list[Track]:
    order = canonical_track_order([(t.name, t.is_drum, t.program) for t in tracks],
                                  lambda k: notes_order_key(tracks[k].notes))
    return [tracks[k] for k in order]


# --------------------------------------------------------------------------------------
# Writing


def score_to_midi_bytes(score: Score) -> bytes:
    """Encode a Score as a type-1 Standard MIDI File (tempo map, meters, one track each).

    Returns:
        The file's bytes.
    """
    import symusic

    out = symusic.Score(int(score.ticks_per_quarter))
    for t in score.tracks:
        track = symusic.Track(t.name, int(t.program), bool(t.is_drum))
        n = t.notes.sorted()
        track.notes = symusic.Note.from_numpy(
            n.start.astype(np.int32),
            (n.end - n.start).astype(np.int32),
            n.pitch.astype(np.int8),
            n.velocity.astype(np.int8),
        )
        out.tracks.append(track)
    out.tempos = symusic.Tempo.from_numpy(
        np.array([x.time for x in score.tempos], np.int32),
        np.array([x.mspq for x in score.tempos], np.int32),
    )
    out.time_signatures = symusic.TimeSignature.from_numpy(
        np.array([x.time for x in score.time_signatures], np.int32),
        np.array([x.numerator for x in score.time_signatures], np.uint8),
        np.array([x.denominator for x in score.time_signatures], np.uint8),
    )
    return bytes(out.dumps_midi())


def write_midi(score: Score, path: str | PathLike) -> Path:
    """Write a Score to ``path`` as a Standard MIDI File.

    Returns:
        The path written.
    """
    path = Path(path)
    path.write_bytes(score_to_midi_bytes(score))
    return path
