"""Shared fixtures: small real corpora that need nothing downloaded."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from musicpairs.midi import Notes, Score, TempoChange, Track, score_to_midi_bytes

DATA = Path(__file__).parent / "data"
POP909_SONGS = sorted((DATA / "pop909").glob("[0-9][0-9][0-9].mid"))
POP909_VERSION = DATA / "pop909" / "002-v2.mid"

# Chorales from music21's bundled corpus (Riemenschneider order): the first twelve sung by
# four voices alone, and two with instruments (continuo; trumpets and timpani).
SATB_CHORALES = (
    "bach/bwv269", "bach/bwv347", "bach/bwv153.1", "bach/bwv86.6", "bach/bwv267",
    "bach/bwv17.7", "bach/bwv40.8", "bach/bwv248.12-2", "bach/bwv38.6", "bach/bwv65.2",
    "bach/bwv33.6", "bach/bwv184.5",
)  # fmt: skip
INSTRUMENTAL_CHORALES = ("bach/bwv8.6", "bach/bwv248.9-1")


@pytest.fixture(scope="session")
def chorale_files(tmp_path_factory) -> dict[str, Path]:
    """The chorales above, written to MIDI by music21 in this session."""
    from music21 import corpus

    out = tmp_path_factory.mktemp("chorales")
    files = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in SATB_CHORALES + INSTRUMENTAL_CHORALES:
            path = out / (name.replace("/", "_") + ".mid")
            corpus.parse(name).write("midi", fp=path)
            files[name] = path
    return files


@pytest.fixture(scope="session")
def real_midi_files(chorale_files) -> list[Path]:
    """Every real file the tests use: committed POP909 songs and the chorales."""
    return [*POP909_SONGS, POP909_VERSION, *chorale_files.values()]


def synth_song(seed: int, bars: int = 20, melody_name: str = "Melody") -> bytes:
    """A small band song: a melody line, piano chords and a bass line, 4/4 at 480 tpq."""
    rng = np.random.default_rng(seed)
    q = 480
    steps = bars * 16
    mel_start = np.arange(0, steps, 2) * (q // 4)
    mel_pitch = 60 + np.cumsum(rng.integers(-2, 3, len(mel_start))) % 19
    chords_start = np.repeat(np.arange(bars * 2) * 2 * q, 3)
    chord_root = np.repeat(48 + rng.integers(0, 7, bars * 2), 3)
    chords_pitch = chord_root + np.tile([0, 4, 7], bars * 2)
    bass_start = np.arange(bars * 4) * q
    bass_pitch = 36 + rng.integers(0, 7, bars * 4)

    def track(name, program, start, dur, pitch, vel):
        n = len(start)
        return Track(name, program, False, Notes(
            start.astype(np.int64), (start + dur).astype(np.int64),
            np.asarray(pitch, np.uint8), np.full(n, vel, np.uint8)))

    score = Score(q, [
        track(melody_name, 73, mel_start, q // 2 - 10, mel_pitch, 100),
        track("Piano", 0, chords_start, 2 * q - 20, chords_pitch, 70),
        track("Bass", 33, bass_start, q - 20, bass_pitch, 90),
    ], [TempoChange(0, 500_000 + 1000 * seed)])
    return score_to_midi_bytes(score)


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory) -> Path:
    """12 generated songs and two bad files, melody2accomp, 3 songs per shard (built once
    per session on a one-worker LocalCluster)."""
    from musicpairs.build import BuildConfig, build

    root = tmp_path_factory.mktemp("inspect-songs")
    for i in range(12):
        (root / f"song{i:02d}.mid").write_bytes(synth_song(i, bars=24))
    (root / "empty.mid").write_bytes(b"")
    (root / "noise.mid").write_bytes(b"MThd" + bytes(range(40)))
    out = tmp_path_factory.mktemp("inspect-ds") / "ds"
    build(BuildConfig(src="folder", path=str(root), task="melody2accomp", out=str(out),
                      workers=1, songs_per_shard=3))
    return out
