"""POP909: ``NNN/NNN.mid`` and its earlier arrangements ``NNN/versions/NNN-vK.mid``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from musicpairs.datasets.base import Corpus, MidiSource, Song


class Pop909Corpus(Corpus):
    """One song per ``NNN`` folder; the main file first, then its versions by name."""

    name = "pop909"

    def __init__(self, root: str | Path):
        super().__init__()
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"POP909 folder not found: {self.root}")

    def songs(self) -> Iterator[Song]:
        for folder in sorted(p for p in self.root.iterdir() if p.is_dir()):
            main = folder / f"{folder.name}.mid"
            versions = sorted((folder / "versions").glob("*.mid"))
            files = ([main] if main.is_file() else []) + versions
            if files:
                yield Song(folder.name, tuple(
                    MidiSource(str(f), name=f.relative_to(self.root).as_posix()) for f in files))

    def describe(self) -> dict:
        return {"src": self.name, "path": str(self.root)}
