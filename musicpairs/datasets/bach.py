"""The Bach chorales bundled with music21: no path, no download."""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

from musicpairs.datasets.base import Corpus, MidiSource, Song
from musicpairs.errors import MidiReadError


def chorale_midi_bytes(name: str) -> bytes:
    """One chorale of music21's corpus (e.g. ``"bach/bwv269"``) written as MIDI bytes.

    Raises:
        MidiReadError: music21 cannot parse or export the score.
    """
    from music21 import corpus

    with warnings.catch_warnings(), tempfile.TemporaryDirectory() as tmp:
        warnings.simplefilter("ignore")
        path = Path(tmp) / "chorale.mid"
        try:
            corpus.parse(name).write("midi", fp=path)
        except Exception as e:  # noqa: BLE001 - music21 raises many types for bad scores
            raise MidiReadError(f"music21:{name}", f"music21 cannot export it to MIDI: "
                                f"{type(e).__name__}: {e}") from e
        return path.read_bytes()


class BachCorpus(Corpus):
    """music21's 371 Bach chorales (Riemenschneider numbering), one song each.

    The scores are MusicXML; each is written to MIDI when the song is processed (in the
    worker), so crawling is instant. Song id: the corpus name, e.g. ``bach/bwv269``. Two
    numbers that point at one file are one song.
    """

    name = "bach"

    def songs(self) -> Iterator[Song]:
        from music21 import corpus

        seen = set()
        for name in corpus.chorales.Iterator(numberingSystem="riemenschneider",
                                             returnType="filename"):
            if name in seen:
                continue
            seen.add(name)
            yield Song(name, (MidiSource(f"music21:{name}", name=name),))
