"""midi.py: three parsers, one Score; bad files raise MidiReadError from every parser."""

from __future__ import annotations

import os

import numpy as np
import pytest

from musicpairs import MidiReadError, midi_to_roll, read_midi
from musicpairs.midi import PARSERS, Score, score_to_midi_bytes, write_midi

from conftest import INSTRUMENTAL_CHORALES, POP909_SONGS, POP909_VERSION, SATB_CHORALES
from smf import note, simple_song, smf, track

OTHER_PARSERS = [p for p in PARSERS if p != "symusic"]


def note_set(t) -> set[tuple[int, int, int, int]]:
    n = t.notes
    columns = (n.start.tolist(), n.end.tolist(), n.pitch.tolist(), n.velocity.tolist())
    return set(zip(*columns, strict=True))


@pytest.mark.parametrize("parser", OTHER_PARSERS)
@pytest.mark.parametrize("path", POP909_SONGS, ids=lambda p: p.name)
def test_parsers_give_identical_rolls_on_pop909(path, parser):
    reference = midi_to_roll(path)
    assert reference.planes.any()
    assert midi_to_roll(path, parser=parser) == reference


@pytest.mark.parametrize("parser", OTHER_PARSERS)
@pytest.mark.parametrize("name", SATB_CHORALES[:4] + INSTRUMENTAL_CHORALES)
def test_parsers_give_identical_rolls_on_chorales(chorale_files, name, parser):
    path = chorale_files[name]
    reference = midi_to_roll(path)
    assert len(reference.tracks) >= 4
    assert midi_to_roll(path, parser=parser) == reference


def test_miditoolkit_matches_symusic_where_pretty_midi_differs():
    assert midi_to_roll(POP909_VERSION, parser="miditoolkit") == midi_to_roll(POP909_VERSION)


def test_pretty_midi_ends_every_overlapping_note_at_the_first_note_off():
    """pretty_midi's documented behaviour, and the only difference on this file.

    When a second note-on of a pitch comes while the first still sounds, the next
    note-off ends both in pretty_midi; symusic and miditoolkit end the older one first.
    So the later note of each overlapping pair is shorter in pretty_midi, ending exactly
    where the earlier one ends; nothing else differs.
    """
    ours, theirs = read_midi(POP909_VERSION), read_midi(POP909_VERSION, parser="pretty_midi")
    assert [(t.name, t.program, t.is_drum) for t in ours.tracks] == [
        (t.name, t.program, t.is_drum) for t in theirs.tracks
    ]
    assert ours.tempos == theirs.tempos and ours.time_signatures == theirs.time_signatures
    differing = 0
    for a, b in zip(ours.tracks, theirs.tracks, strict=True):
        sa, sb = note_set(a), note_set(b)
        assert len(sa) == len(sb)
        for start, end, pitch, vel in sa - sb:
            differing += 1
            earlier = [o for o in sa if o[2] == pitch and o[0] < start < o[1]]
            assert len(earlier) == 1, "every differing note overlaps one earlier note"
            assert (start, earlier[0][1], pitch, vel) in sb, "pretty_midi ends it there"
            assert earlier[0][1] < end
    assert differing == 3


def test_score_survives_write_and_read(tmp_path):
    score = read_midi(POP909_SONGS[0])
    path = write_midi(score, tmp_path / "again.mid")
    again = read_midi(path)
    assert again.ticks_per_quarter == score.ticks_per_quarter
    assert again.tempos == score.tempos
    assert again.time_signatures == score.time_signatures
    assert [t.name for t in again.tracks] == [t.name for t in score.tracks]
    assert all(x.notes.equals(y.notes) for x, y in zip(score.tracks, again.tracks, strict=True))


@pytest.mark.parametrize("parser", PARSERS)
def test_reads_bytes_and_paths_alike(parser, tmp_path):
    data = simple_song()
    path = tmp_path / "song.mid"
    path.write_bytes(data)
    from_bytes, from_path = read_midi(data, parser=parser), read_midi(path, parser=parser)
    assert from_bytes.source == "<bytes>" and from_path.source == str(path)
    assert [t.name for t in from_bytes.tracks] == ["Melody"]
    assert from_bytes.tracks[0].notes.equals(from_path.tracks[0].notes)
    assert from_bytes.tracks[0].notes.start.tolist() == [0, 480, 960]


def test_type0_file_splits_channels_in_the_same_order_everywhere():
    events = [(0, b"\xff\x03\x04Solo"), (0, b"\xc1\x21")]
    events += [(0, b"\x90\x3c\x40"), (0, b"\x91\x28\x50"), (0, b"\x99\x24\x64")]
    events += [(480, b"\x80\x3c\x00"), (0, b"\x81\x28\x00"), (0, b"\x89\x24\x00")]
    events += [(0, b"\xc0\x05")] + note(64)
    data = smf([track(events)], fmt=0)
    rolls = [midi_to_roll(data, parser=p) for p in PARSERS]
    assert rolls[0] == rolls[1] == rolls[2]
    assert sorted((t.program, t.is_drum) for t in rolls[0].tracks) == [
        (0, False), (0, True), (5, False), (33, False)]


def test_track_names_that_are_not_utf8_read_alike():
    name = b"hoa \xe2m"  # latin-1 bytes in a track name (seen in POP909 versions)
    data = smf([track([(0, b"\xff\x03" + bytes([len(name)]) + name)] + note(60))])
    names = {p: read_midi(data, parser=p).tracks[0].name for p in PARSERS}
    assert set(names.values()) == {"hoa \ufffdm"}, names


def test_missing_tempo_and_meter_get_midi_defaults():
    score = read_midi(smf([track(note(60))]))
    assert [(t.time, t.mspq) for t in score.tempos] == [(0, 500_000)]
    assert [(s.time, s.numerator, s.denominator) for s in score.time_signatures] == [(0, 4, 4)]


def test_unknown_parser_is_a_value_error():
    with pytest.raises(ValueError, match="unknown MIDI parser"):
        read_midi(simple_song(), parser="mido")


# --- bad input -------------------------------------------------------------------------

def _bad_files() -> dict[str, tuple[bytes, str]]:
    good = simple_song()
    rng = np.random.default_rng(7)
    random_bytes = rng.integers(0, 256, 2000, dtype=np.uint8).tobytes()
    return {
        "empty": (b"", "empty file"),
        "random bytes": (random_bytes, "not a MIDI file"),
        "truncated": (good[: len(good) - 9], "truncated"),
        "truncated at a chunk": (good[:14 + 8 + 11], "truncated"),
        "zero ticks per quarter": (simple_song(tpq=0), "0 ticks per quarter"),
        "SMPTE division": (simple_song(tpq=0xE728), "SMPTE"),
        "text named .mid": (b"MIDI is a protocol, this is a text file.\n" * 20,
                            "not a MIDI file"),
        "pitch byte > 127": (smf([track([(0, b"\x90\xbc\x40"), (480, b"\x80\xbc\x00")])]),
                             "127"),
        "velocity byte > 127": (smf([track([(0, b"\x90\x3c\xc0"), (480, b"\x80\x3c\x00")])]),
                                "127"),
        "header only": (good[:14], "truncated"),
    }


BAD = _bad_files()


@pytest.mark.parametrize("parser", PARSERS)
@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_file_raises_midi_read_error_naming_file_and_reason(case, parser, tmp_path):
    data, reason = BAD[case]
    path = tmp_path / f"{case.replace(' ', '_')}.mid"
    path.write_bytes(data)
    with pytest.raises(MidiReadError) as info:
        read_midi(path, parser=parser)
    err = info.value
    assert err.path == str(path)
    assert reason in err.reason
    assert str(err).startswith(f"{path}: ")
    assert "\n" not in str(err)


@pytest.mark.parametrize("parser", PARSERS)
def test_missing_file_is_a_midi_read_error(parser, tmp_path):
    with pytest.raises(MidiReadError, match="cannot open"):
        read_midi(tmp_path / "nope.mid", parser=parser)


def test_midi_read_error_survives_pickling():
    import pickle

    err = pickle.loads(pickle.dumps(MidiReadError("a.mid", "empty file")))
    assert (err.path, err.reason, str(err)) == ("a.mid", "empty file", "a.mid: empty file")


def test_score_bytes_are_a_valid_file():
    data = score_to_midi_bytes(Score(480, []))
    assert data[:4] == b"MThd"
    assert read_midi(data).tracks == []


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX file types")
def test_directory_is_a_midi_read_error(tmp_path):
    with pytest.raises(MidiReadError, match="cannot open"):
        read_midi(tmp_path)
