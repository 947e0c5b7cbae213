"""roles.py: melody by name and by content, bass, drums, LPD-5 and LPD-17 families."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from musicpairs import midi_to_roll
from musicpairs.midi import Notes, Score, Track
from musicpairs.roles import (
    LPD17,
    assign_roles,
    find_melody,
    lpd5_family,
    lpd17_family,
    melody_scores,
    name_says_bass,
    name_says_melody,
)

from conftest import INSTRUMENTAL_CHORALES, POP909_SONGS, SATB_CHORALES


def erase_names(roll):
    return dataclasses.replace(
        roll, tracks=tuple(dataclasses.replace(t, name="") for t in roll.tracks))


@pytest.mark.parametrize("path", POP909_SONGS, ids=lambda p: p.name)
def test_pop909_melody_found_by_name_and_by_content(path):
    roll = midi_to_roll(path)
    truth = [t.name for t in roll.tracks].index("MELODY")
    roles = assign_roles(roll)
    assert (roles[truth].role, roles[truth].by) == ("melody", "name")
    assert find_melody(erase_names(roll)) == truth
    assert find_melody(roll, use_names=False) == truth


@pytest.mark.parametrize("name", SATB_CHORALES + INSTRUMENTAL_CHORALES)
def test_chorale_soprano_found_by_content(chorale_files, name):
    roll = midi_to_roll(chorale_files[name])
    truth = [t.name for t in roll.tracks].index("Soprano")
    assert find_melody(erase_names(roll)) == truth
    roles = assign_roles(roll)
    assert roles[truth].role == "melody"
    assert roles[[t.name for t in roll.tracks].index("Bass")].role == "bass"


def test_useless_names_fall_back_to_content():
    roll = midi_to_roll(POP909_SONGS[0])
    truth = [t.name for t in roll.tracks].index("MELODY")
    renamed = dataclasses.replace(roll, tracks=tuple(
        dataclasses.replace(t, name=f"Track {k}") for k, t in enumerate(roll.tracks)))
    assert find_melody(renamed) == truth
    assert assign_roles(renamed)[truth].by == "content"


def test_a_misleading_name_on_a_chord_track_is_not_believed():
    roll = midi_to_roll(POP909_SONGS[0])
    names = [t.name for t in roll.tracks]
    piano, melody = names.index("PIANO"), names.index("MELODY")
    tracks = list(roll.tracks)
    tracks[piano] = dataclasses.replace(tracks[piano], name="Vocals")
    tracks[melody] = dataclasses.replace(tracks[melody], name="")
    assert find_melody(dataclasses.replace(roll, tracks=tuple(tracks))) == melody


@pytest.mark.parametrize("name", [
    "MELODY", "Melody 2", "melody2", " MELODY", "MELOPY", "MELDOY", "Lead Vocal", "Vox",
    "voice", "Soprano", "Mélodie", "Melodía", "Singstimme", "Gesang", "Voix", "主旋律",
    "人声", "メロディ", "ボーカル", "멜로디", "Мелодия", "Lead",
])
def test_melody_names(name):
    assert name_says_melody(name)


@pytest.mark.parametrize("name", [
    "PIANO", "BRIDGE", "Backing Vocals", "Vocal Harmony", "BGV", "Bass", "Strings",
    "Drums", "Alto", "Tenor", "", "Track 1", "Steinway Grand Piano", "Chords", "Pad",
])
def test_not_melody_names(name):
    assert not name_says_melody(name)


@pytest.mark.parametrize(("name", "is_bass"), [
    ("Bass", True), ("Fretless Bass", True), ("bass 2", True), ("贝斯", True),
    ("Bassoon", False), ("Contrabass", True), ("Melody", False), ("ベース", True),
])
def test_bass_names(name, is_bass):
    assert name_says_bass(name) is is_bass


def _track(name, program, is_drum, notes):
    arr = np.array(notes, np.int64).reshape(-1, 4)
    return Track(name, program, is_drum, Notes(arr[:, 0], arr[:, 1], arr[:, 2].astype(np.uint8),
                                               arr[:, 3].astype(np.uint8)))


def test_roles_of_a_band():
    line = [(i * 240, i * 240 + 200, 60 + (i % 5), 90) for i in range(32)]
    chords = [(i * 960, i * 960 + 900, p, 60) for i in range(8) for p in (48, 52, 55)]
    bassline = [(i * 480, i * 480 + 400, 36 + (i % 3), 90) for i in range(16)]
    kick = [(i * 480, i * 480 + 60, 36, 100) for i in range(16)]
    score = Score(480, [
        _track("a", 0, False, chords), _track("b", 33, False, bassline),
        _track("c", 0, True, kick), _track("d", 81, False, line), _track("e", 100, False, chords),
    ])
    roles = assign_roles(midi_to_roll(score))
    assert [r.role for r in roles] == ["other", "bass", "drums", "melody", "other"]
    assert [r.by for r in roles] == ["default", "program", "drum flag", "content", "default"]
    assert [r.lpd5 for r in roles] == ["piano", "bass", "drums", "strings", None]
    assert [r.lpd17 for r in roles] == ["piano", "bass", "drums", "synth lead", "synth effects"]


def test_no_melody_when_every_track_is_chords_or_drums():
    chords = [(i * 960, i * 960 + 900, p, 60) for i in range(8) for p in (48, 52, 55)]
    kick = [(i * 480, i * 480 + 60, 36, 100) for i in range(16)]
    roll = midi_to_roll(Score(480, [_track("Melody", 0, False, chords),
                                    _track("", 0, True, kick)]))
    assert find_melody(roll) is None
    assert np.isneginf(melody_scores(roll)).all()


def test_lpd5_families_cover_the_documented_ranges():
    expected = {0: "piano", 7: "piano", 8: "strings", 23: "strings", 24: "guitar",
                31: "guitar", 32: "bass", 39: "bass", 40: "strings", 95: "strings",
                96: None, 103: None, 104: "strings", 111: "strings", 112: None, 127: None}
    for program, family in expected.items():
        assert lpd5_family(program, False) == family, program
    assert all(lpd5_family(p, True) == "drums" for p in range(128))


def test_lpd17_is_drums_plus_program_groups():
    assert len(LPD17) == 17
    assert [lpd17_family(p, False) for p in range(0, 128, 8)] == list(LPD17[1:])
    assert lpd17_family(7, False) == "piano" and lpd17_family(8, False) == "chromatic percussion"
    assert lpd17_family(40, True) == "drums"
