"""POP909: ``NNN/NNN.mid`` and its earlier arrangements ``NNN/versions/NNN-vK.mid``."""

from __future__ import annotations

import os
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
        # scandir: one directory read per folder and no stat per file (909 folders).
        with os.scandir(self.root) as it:
            folders = sorted(e.name for e in it if e.is_dir())
        for name in folders:
            folder = self.root / name
            files = []
            if (folder / f"{name}.mid").is_file():
                files.append(f"{name}/{name}.mid")
            try:
                with os.scandir(folder / "versions") as it:
                    files += sorted(f"{name}/versions/{e.name}" for e in it
                                    if e.name.endswith(".mid") and e.is_file())
            except (FileNotFoundError, NotADirectoryError):
                pass
            if files:
                yield Song(name, tuple(MidiSource(str(self.root / f), name=f) for f in files))

    def describe(self) -> dict:
        return {"src": self.name, "path": str(self.root)}
