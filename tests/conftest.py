"""Shared fixtures: small real corpora that need nothing downloaded."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

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
