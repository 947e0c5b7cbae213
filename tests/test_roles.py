"""roles.py: melody by name and by content, bass, drums, LPD-5 and LPD-17 families."""

from __future__ import annotations

import dataclasses
import json
import pickle
from importlib import resources

import numpy as np
import pytest

from musicpairs import midi_to_roll
from musicpairs.midi import Notes, Score, Track
from musicpairs.roles import (
    FEATURES,
    LPD17,
    MelodyModel,
    assign_roles,
    choose_melody,
    default_model,
    find_melody,
    lpd5_family,
    lpd17_family,
    melody_name_strength,
    melody_probabilities,
    name_says_bass,
    name_says_drums,
    name_says_melody,
    track_features,
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
    roll = midi_to_roll(POP909_SONGS[-1])  # its PIANO sounds chords 93 % of the time
    names = [t.name for t in roll.tracks]
    piano, melody = names.index("PIANO"), names.index("MELODY")
    tracks = list(roll.tracks)
    tracks[piano] = dataclasses.replace(tracks[piano], name="Vocals")
    tracks[melody] = dataclasses.replace(tracks[melody], name="")
    assert find_melody(dataclasses.replace(roll, tracks=tuple(tracks))) == melody


@pytest.mark.parametrize("name", [
    "MELODY", "Melody 2", "melody2", " MELODY", "MELOPY", "MELDOY", "Lead Vocal", "Vox",
    "voice", "Soprano", "Mélodie", "Melodía", "Singstimme", "Gesang", "Voix", "主旋律",
    "人声", "メロディ", "ボーカル", "멜로디", "Мелодия", "Trumpet {Melody}", "ORGAN - MELODY",
    "Kurt Cobain -Vocals-", "melody (harmonica)",
])
def test_melody_names(name):
    assert name_says_melody(name)
    assert melody_name_strength(name) == 2


@pytest.mark.parametrize("name", ["Lead", "Lead Guitar", "Solo", "Brass Lead", "Theme"])
def test_weaker_melody_names(name):
    assert melody_name_strength(name) == 1


@pytest.mark.parametrize("name", [
    "PIANO", "BRIDGE", "Backing Vocals", "Vocal Harmony", "BGV", "Bass", "Strings",
    "Drums", "Alto", "Tenor", "", "Track 1", "Steinway Grand Piano", "Chords", "Pad",
    "Soprano Sax", "SOPRAN SAX", "Secondary Vocals", "space voice", "Choir Aahs",
])
def test_not_melody_names(name):
    assert not name_says_melody(name)


@pytest.mark.parametrize(("name", "drums"), [
    ("Drums", True), ("Bass Drum", True), ("Hi Hat", True), ("perc.", True), ("Toms", True),
    ("Schlagzeug", True), ("Bass", False), ("Melody", False), ("Tom's Guitar", False),
])
def test_drum_names(name, drums):
    assert name_says_drums(name) is drums


@pytest.mark.parametrize(("name", "is_bass"), [
    ("Bass", True), ("Fretless Bass", True), ("bass 2", True), ("贝斯", True),
    ("Bassoon", False), ("Contrabass", True), ("Melody", False), ("ベース", True),
    ("Bass Drum", False),
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
    assert choose_melody(roll).by == "no candidate"


def _line(offset=0, n=64, step=240, low=60):
    """A singable line: steps of a scale, one note at a time."""
    scale = np.array([0, 2, 4, 5, 7, 9, 11, 12])
    walk = np.abs((np.arange(n) % 14) - 7)
    return [(offset + i * step, offset + i * step + step - 20, int(low + scale[w]), 100)
            for i, w in enumerate(walk)]


def _chords(n=16):
    return [(i * 960, i * 960 + 900, p, 60) for i in range(n) for p in (48, 52, 55)]


def test_a_melody_name_wins_over_a_weaker_name_and_over_content():
    # As in a real "Mr. Blue Sky": the track named Melody sings throughout; "Lead
    # Guitar" plays a few high notes.
    lead = [(i * 1920, i * 1920 + 200, 84 + (i % 3), 110) for i in range(12)]
    score = Score(480, [_track("Lead Guitar", 29, False, lead),
                        _track("Melody", 0, False, _line(low=55)),
                        _track("Piano", 0, False, _chords())])
    roll = midi_to_roll(score)
    assert find_melody(roll) == [t.name for t in roll.tracks].index("Melody")
    assert assign_roles(roll)[[t.name for t in roll.tracks].index("Melody")].by == "name"


def test_a_vocal_name_wins_whatever_the_program():
    # As in a real "Funkytown": the vocal line is played by a trumpet patch.
    score = Score(480, [_track("Vocal", 56, False, _line(low=52)),
                        _track("Synth", 81, False, _line(offset=120, low=72)),
                        _track("Piano", 0, False, _chords())])
    roll = midi_to_roll(score)
    assert roll.tracks[find_melody(roll)].name == "Vocal"


def test_a_name_split_by_program_counts_as_one_name():
    # One MIDI track named Melodie with a program change: the parser gives two parts.
    score = Score(480, [_track("Melodie", 0, False, _line(n=8)),
                        _track("Melodie", 73, False, _line(offset=8 * 240, n=56)),
                        _track("Piano", 0, False, _chords())])
    roll = midi_to_roll(score)
    k = find_melody(roll)
    assert (roll.tracks[k].name, roll.tracks[k].program) == ("Melodie", 73)
    assert assign_roles(roll)[k].by == "name"


@pytest.mark.parametrize("use_names", [True, False])
def test_drums_and_percussive_tracks_are_never_the_melody(use_names):
    # Each of these plays the most melody-like line of the song; none may be chosen.
    kit = [(i * 240, i * 240 + 60, p, 100) for i in range(64) for p in
           ((36, 42) if i % 2 == 0 else (38, 42))]
    tracks = [
        _track("a", 0, True, _line(low=72)),         # drum flag
        _track("b", 115, False, _line(low=74)),      # a percussive program (112-127)
        _track("c", 0, False, kit),                  # a kit on another channel
        _track("Drums", 0, False, _line(low=76)),    # named drums
        _track("e", 0, False, _line(low=48, step=480, n=32)),  # the real tune, lower
        _track("f", 0, False, _chords()),
    ]
    named = midi_to_roll(Score(480, tracks))
    assert [t.name for t in named.tracks] == ["a", "b", "c", "Drums", "e", "f"]
    roll = named if use_names else erase_names(named)
    features = track_features(roll)
    assert features.percussive[:3].all()
    assert features.percussive[3] == use_names
    k = find_melody(roll, use_names=use_names)
    assert k is not None and k >= 3 + use_names
    assert melody_probabilities(roll)[:3].sum() == 0


def test_abstains_below_the_confidence_threshold():
    roll = erase_names(midi_to_roll(POP909_SONGS[0]))
    choice = choose_melody(roll)
    assert choice.by == "content" and 0 < choice.confidence < 1
    below = choose_melody(roll, min_confidence=choice.confidence + 1e-6)
    assert (below.track, below.by) == (None, "not confident")
    assert find_melody(roll, min_confidence=choice.confidence) == choice.track
    # Names are not held to the threshold.
    assert find_melody(midi_to_roll(POP909_SONGS[0]), min_confidence=1.0) is not None


def test_the_classifier_file_is_json_and_loads_without_pickle(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the melody model must not be unpickled")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(np, "load", refuse)
    default_model.cache_clear()
    model = default_model()
    data = json.loads(resources.files("musicpairs").joinpath("data/melody_model.json")
                      .read_text())
    assert data["features"] == list(FEATURES)
    assert MelodyModel.from_json(data).to_json()["w2"] == model.to_json()["w2"]
    assert model.scores(np.zeros((2, len(FEATURES)))).shape == (2,)
    with pytest.raises(ValueError, match="other features"):
        MelodyModel.from_json({**data, "features": ["something else"]})


def test_probabilities_sum_to_one_over_candidates():
    roll = midi_to_roll(POP909_SONGS[1])
    probs = melody_probabilities(roll)
    features = track_features(roll)
    assert probs[~features.candidate].sum() == 0
    assert probs[features.candidate].sum() == pytest.approx(1.0)


def test_features_do_not_depend_on_how_the_roll_was_made():
    # From midi_to_roll's grid notes, or decoded from the planes: the same features.
    roll = midi_to_roll(POP909_SONGS[2])
    decoded = dataclasses.replace(roll)  # no grid notes kept: decoded from the planes
    assert getattr(decoded, "_grid", None) is None
    np.testing.assert_allclose(track_features(decoded).values, track_features(roll).values)


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


@pytest.mark.parametrize("names", [True, False])
def test_a_build_choice_is_the_explained_choice(names):
    # choose_melody(explain=False), as a build calls it, scores content only when names
    # do not decide: the same track either way.
    rolls = [midi_to_roll(p) for p in POP909_SONGS]
    rolls += [midi_to_roll(Score(480, [_track("Lead Guitar", 29, False, _line(low=72)),
                                       _track("Solo", 0, False, _line(low=60)),
                                       _track("Piano", 0, False, _chords())]))]
    for roll in rolls:
        roll = roll if names else erase_names(roll)
        explained, quick = choose_melody(roll), choose_melody(roll, explain=False)
        assert (quick.track, quick.by) == (explained.track, explained.by)
