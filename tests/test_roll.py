"""roll.py: the data contract's grid and planes, lossless round trips, bars."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from musicpairs import MidiReadError, Roll, RollSpec, midi_to_roll, roll_to_midi
from musicpairs.midi import (
    PARSERS,
    Notes,
    Score,
    TempoChange,
    TimeSignature,
    Track,
    score_to_midi_bytes,
)
from musicpairs.roll import (
    FRAME,
    ONSET,
    TrackInfo,
    downbeat_steps,
    planes_to_notes,
    roll_to_score,
    ticks_to_steps,
)


def make_score(tracks, tpq=480, tempos=(), signatures=()) -> Score:
    """A Score from [(name, program, is_drum, [(start, end, pitch, velocity), ...])]."""
    out = []
    for name, program, is_drum, notes in tracks:
        arr = np.array(notes, np.int64).reshape(-1, 4)
        out.append(Track(name, program, is_drum, Notes(
            arr[:, 0], arr[:, 1], arr[:, 2].astype(np.uint8), arr[:, 3].astype(np.uint8))))
    return Score(tpq, out, list(tempos) or [TempoChange(0, 500_000)],
                 list(signatures) or [TimeSignature(0, 4, 4)])


def reference_planes(score: Score, spb: int) -> np.ndarray:
    """The contract, step by step, with loops: what midi_to_roll must produce."""
    tpq = score.ticks_per_quarter

    def step(tick):  # round half up
        return int(np.floor(tick * spb / tpq + 0.5))

    per_track = []
    for t in score.tracks:
        merged: dict[tuple[int, int], list[int]] = {}  # (pitch, start) -> [end, velocity]
        n = t.notes
        for s, e, p, v in zip(n.start, n.end, n.pitch, n.velocity, strict=True):
            s0 = step(int(s))
            e0 = max(step(int(e)), s0 + 1)
            old = merged.get((int(p), s0), [0, 0])
            merged[(int(p), s0)] = [max(old[0], e0), max(old[1], max(int(v), 1))]
        per_track.append(merged)
    n_steps = max((e for m in per_track for e, _ in m.values()), default=0)
    planes = np.zeros((len(score.tracks), 2, 128, n_steps), np.uint8)
    for k, merged in enumerate(per_track):
        for (p, s), (e, v) in merged.items():
            later = [s2 for (p2, s2) in merged if p2 == p and s2 > s]
            stop = min([e, *later])
            planes[k, ONSET, p, s] = v
            for t in range(s, stop):
                planes[k, FRAME, p, t] = v
    return planes


# --- generated songs ---------------------------------------------------------------------

pitches = st.one_of(st.sampled_from([0, 60, 127]), st.integers(0, 127))
velocities = st.one_of(st.sampled_from([1, 127]), st.integers(1, 127))
names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz ABCXYZ0123456789", max_size=8)


any_program = st.integers(0, 127)


@st.composite
def grid_songs(draw, names=names, programs=any_program,
               max_tracks: int = 4) -> tuple[Score, RollSpec]:
    """A multitrack score whose notes, tempos and meters sit on a random grid.

    Notes of one pitch may overlap in any way, as a Score built in code allows.
    """
    spb = draw(st.sampled_from([1, 2, 3, 4, 6, 8, 12]))
    tpq = spb * draw(st.sampled_from([1, 5, 24, 120]))
    scale = tpq // spb
    tracks = []
    for _ in range(draw(st.integers(1, max_tracks))):
        notes = draw(st.lists(
            st.tuples(st.integers(0, 48), st.integers(0, 10), pitches, velocities),
            min_size=1, max_size=14))
        # Repeated notes of one pitch, back to back: only the onset plane tells them apart.
        if draw(st.booleans()):
            s, d, p, v = notes[0]
            d = max(d, 1)
            notes += [(s + d, d, p, v), (s + 2 * d, d, p, max(1, v // 2))]
        tracks.append((
            draw(names), draw(programs), draw(st.booleans()),
            [(s * scale, (s + d) * scale, p, v) for s, d, p, v in notes],
        ))
    tempos = [TempoChange(s * scale, m) for s, m in draw(st.lists(
        st.tuples(st.integers(0, 60), st.integers(100_000, 2_000_000)), max_size=4))]
    signatures = [TimeSignature(s * scale, n, d) for s, n, d in draw(st.lists(
        st.tuples(st.integers(0, 60), st.integers(1, 13), st.sampled_from([1, 2, 4, 8, 16, 32])),
        max_size=4))]
    return make_score(tracks, tpq, tempos, signatures), RollSpec(steps_per_beat=spb)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(grid_songs())
def test_roll_to_midi_to_roll_is_identity_for_every_parser(song):
    score, spec = song
    roll = midi_to_roll(score_to_midi_bytes(score), spec)
    with tempfile.TemporaryDirectory() as tmp:
        path = roll_to_midi(roll, Path(tmp) / "again.mid")
        for parser in PARSERS:
            assert midi_to_roll(path, spec, parser=parser) == roll, parser


@settings(max_examples=150, deadline=None)
@given(grid_songs())
def test_midi_to_roll_follows_the_contract(song):
    score, spec = song
    roll = midi_to_roll(score, spec)
    # Same-named tracks may be reordered; score_tracks says where each came from.
    assert sorted(roll.score_tracks) == list(range(len(score.tracks)))
    expected = reference_planes(score, spec.steps_per_beat)[list(roll.score_tracks)]
    np.testing.assert_array_equal(roll.planes, expected)


# Lakh files repeat names (most often the empty one) and programs: tracks that only their
# notes tell apart.
same_named_songs = grid_songs(names=st.sampled_from(["", "Piano"]),
                              programs=st.sampled_from([0, 33]), max_tracks=6)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(same_named_songs, st.sampled_from([1, 3, 7]))
def test_same_named_tracks_round_trip_exactly(song, tpq_factor):
    score, spec = song
    roll = midi_to_roll(score_to_midi_bytes(score), spec)
    with tempfile.TemporaryDirectory() as tmp:
        # Written at another time division and read back: the same roll, same order.
        tpq = spec.steps_per_beat * 120 * tpq_factor
        path = roll_to_midi(roll, Path(tmp) / "again.mid", ticks_per_quarter=tpq)
        for parser in PARSERS:
            assert midi_to_roll(path, spec, parser=parser) == roll, parser
    # Decode -> encode gives the planes back, track by track.
    again = midi_to_roll(roll_to_score(roll), spec)
    np.testing.assert_array_equal(again.planes, roll.planes)


@settings(max_examples=100, deadline=None)
@given(same_named_songs)
def test_grid_notes_are_what_the_planes_hold(song):
    score, spec = song
    roll = midi_to_roll(score, spec)  # planes painted from its grid notes when read
    decoded = Roll(roll.planes.copy(), roll.tracks, roll.tempos, roll.time_signatures, spec)
    for k in range(len(roll.tracks)):
        assert roll.notes(k).equals(decoded.notes(k)), k
    ours, theirs = roll.grid(), decoded.grid()
    for field in ("track", "pitch", "start", "end", "velocity"):
        np.testing.assert_array_equal(getattr(ours, field), getattr(theirs, field))
    # Merged channels from notes are the planes merged, whichever tracks.
    lazy = midi_to_roll(score, spec)
    for tracks in ([], [0], list(range(len(roll.tracks))), list(range(0, len(roll.tracks), 2))):
        expected = np.zeros((2, 128, roll.n_steps), np.uint8)
        for k in tracks:
            np.maximum(expected, roll.planes[k], out=expected)
        np.testing.assert_array_equal(lazy.merged(tracks), expected)
    assert "planes" not in lazy.__dict__  # merging did not paint the whole roll


# --- the contract, case by case ---------------------------------------------------------

def test_ticks_round_half_up_to_steps():
    ticks = np.array([0, 59, 60, 119, 120, 180, 479, 480])
    assert ticks_to_steps(ticks, 480, 4).tolist() == [0, 0, 1, 1, 1, 2, 4, 4]
    assert ticks_to_steps(60, 480, 4) == 1


def test_short_and_zero_length_notes_last_one_step():
    score = make_score([("t", 0, False, [(0, 0, 60, 90), (480, 500, 62, 80)])])
    roll = midi_to_roll(score)
    assert roll.n_steps == 5
    assert roll.planes[0, FRAME, 60].tolist() == [90, 0, 0, 0, 0]
    assert roll.planes[0, FRAME, 62].tolist() == [0, 0, 0, 0, 80]


def test_repeated_notes_of_one_pitch_stay_separate():
    score = make_score([("t", 0, False, [(0, 480, 60, 100), (480, 960, 60, 50)])])
    roll = midi_to_roll(score)
    assert roll.planes[0, ONSET, 60].tolist() == [100, 0, 0, 0, 50, 0, 0, 0]
    assert roll.planes[0, FRAME, 60].tolist() == [100] * 4 + [50] * 4
    notes = roll.notes(0)
    assert list(zip(notes.start, notes.end, notes.velocity, strict=True)) == [
        (0, 4, 100), (4, 8, 50)]


def test_overlapping_notes_of_one_pitch_cut_at_the_next_onset():
    score = make_score([("t", 0, False, [(0, 960, 60, 100), (240, 480, 60, 50)])])
    roll = midi_to_roll(score)
    assert roll.planes[0, FRAME, 60].tolist() == [100, 100, 50, 50, 0, 0, 0, 0][: roll.n_steps]


def test_notes_starting_together_merge_loudest_and_longest():
    score = make_score([("t", 0, False, [(0, 480, 60, 30), (10, 960, 60, 90)])])
    roll = midi_to_roll(score)
    assert roll.planes[0, ONSET, 60].tolist() == [90] + [0] * 7
    assert roll.planes[0, FRAME, 60].tolist() == [90] * 8


def test_pitch_extremes_and_velocity_extremes():
    score = make_score([("t", 0, False, [(0, 120, 0, 1), (0, 120, 127, 127)])])
    roll = midi_to_roll(score)
    assert roll.planes.shape == (1, 2, 128, 1)
    assert roll.planes[0, :, 0, 0].tolist() == [1, 1]
    assert roll.planes[0, :, 127, 0].tolist() == [127, 127]


def test_tempo_changes_do_not_move_notes_and_map_to_steps():
    tempos = [TempoChange(0, 500_000), TempoChange(960, 250_000)]
    score = make_score([("t", 0, False, [(960, 1440, 64, 80)])], tempos=tempos)
    roll = midi_to_roll(score)
    assert roll.tempos == (TempoChange(0, 500_000), TempoChange(8, 250_000))
    assert roll.planes[0, ONSET, 64, 8] == 80
    assert roll.tempos[1].qpm == 240


def test_downbeats_follow_meter_changes():
    sigs = [TimeSignature(0, 4, 4), TimeSignature(32, 3, 4), TimeSignature(56, 6, 8)]
    assert downbeat_steps(sigs, 90, 4).tolist() == [0, 16, 32, 44, 56, 68, 80]
    # A signature starts a bar where it stands, even mid-bar.
    assert downbeat_steps([TimeSignature(0, 4, 4), TimeSignature(6, 4, 4)], 30, 4).tolist() == [
        0, 6, 22]
    # Bars that are not whole steps round half up: 7/16 at 2 steps per beat = 3.5 steps.
    assert downbeat_steps([TimeSignature(0, 7, 16)], 12, 2).tolist() == [0, 4, 7, 11]


def test_roll_downbeats_come_from_its_time_signatures():
    sigs = [TimeSignature(0, 3, 4)]
    score = make_score([("t", 0, False, [(0, 480 * 7, 60, 80)])], signatures=sigs)
    roll = midi_to_roll(score)
    assert roll.downbeats.tolist() == [0, 12, 24]
    assert roll.n_beats == 7


def test_too_long_song_is_refused_before_allocating():
    score = make_score([("t", 0, False, [(0, 480 * 10_000, 60, 80)])])
    score.source = "long.mid"
    with pytest.raises(MidiReadError, match="long.mid: 40000 steps long, over the limit"):
        midi_to_roll(score, RollSpec(max_steps=10_000))


def test_frame_runs_without_onset_decode_as_notes():
    planes = np.zeros((2, 128, 6), np.uint8)
    planes[FRAME, 60, :3] = 70  # a window cut mid-note
    planes[ONSET, 60, 3] = planes[FRAME, 60, 3:5] = 40
    notes = planes_to_notes(planes)
    assert list(zip(notes.start, notes.end, notes.pitch, notes.velocity, strict=True)) == [
        (0, 3, 60, 70), (3, 5, 60, 40)]


def test_empty_score_gives_empty_roll():
    roll = midi_to_roll(Score(480, []))
    assert roll.planes.shape == (0, 2, 128, 0)
    assert roll.downbeats.tolist() == []


def test_roll_checks_its_shape():
    with pytest.raises(ValueError, match="uint8"):
        Roll(np.zeros((1, 2, 128, 4), np.int16), (TrackInfo("a", 0, False),), (), ())
    with pytest.raises(ValueError, match="does not fit"):
        Roll(np.zeros((2, 2, 128, 4), np.uint8), (TrackInfo("a", 0, False),), (), ())


def test_roll_to_midi_writes_at_the_original_tempo(tmp_path):
    tempos = [TempoChange(0, 600_000), TempoChange(480, 400_000)]
    roll = midi_to_roll(make_score([("t", 0, False, [(0, 960, 60, 80)])], tempos=tempos))
    path = roll_to_midi(roll, tmp_path / "out.mid", ticks_per_quarter=960)
    from musicpairs import read_midi

    score = read_midi(path)
    assert score.ticks_per_quarter == 960
    assert [(t.time, t.mspq) for t in score.tempos] == [(0, 600_000), (960, 400_000)]
    with pytest.raises(ValueError, match="multiple of steps_per_beat"):
        roll_to_midi(roll, tmp_path / "x.mid", ticks_per_quarter=962)


def test_roll_spec_validates_and_round_trips():
    spec = RollSpec(steps_per_beat=12, max_steps=1000)
    assert RollSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ValueError):
        RollSpec(steps_per_beat=0)
    with pytest.raises(ValueError, match="unknown"):
        RollSpec.from_dict({"steps": 4})


@example(spb=4)
@given(st.sampled_from([1, 2, 3, 4, 6, 8, 12, 24]))
def test_downbeats_are_increasing_and_inside_the_song(spb):
    sigs = [TimeSignature(0, 5, 8), TimeSignature(7 * spb, 2, 2), TimeSignature(9 * spb, 3, 16)]
    d = downbeat_steps(sigs, 40 * spb, spb)
    assert d[0] == 0 and np.all(np.diff(d) > 0) and d[-1] < 40 * spb
