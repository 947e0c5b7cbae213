"""Any folder, glob or fsspec URL of MIDI files."""

from __future__ import annotations

import glob
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from musicpairs.datasets.base import Corpus, MidiSource, Song, is_midi_name


class FolderCorpus(Corpus):
    """MIDI files found recursively under a folder, by a glob, or under an fsspec URL.

    Song id: the file stem (files that share a stem are versions of one song), or the
    parent folder's name with ``group_by="parent"``.
    """

    name = "folder"

    def __init__(self, location: str | Path, group_by: str = "file"):
        super().__init__()
        if group_by not in ("file", "parent"):
            raise ValueError(f"group_by must be 'file' or 'parent', got {group_by!r}")
        self.location = str(location)
        self.group_by = group_by

    def files(self) -> list[str]:
        loc = self.location
        if "://" in loc:
            import fsspec

            fs, _, paths = fsspec.get_fs_token_paths(loc)
            found = []
            for p in paths:
                found += fs.find(p) if fs.isdir(p) else [p]
            protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
            return sorted(f"{protocol}://{f.split('://')[-1]}" for f in found if is_midi_name(f))
        if any(c in loc for c in "*?["):
            return sorted(f for f in glob.glob(loc, recursive=True) if is_midi_name(f))  # noqa: PTH207 - a user glob
        root = Path(loc)
        if not root.is_dir():
            raise FileNotFoundError(f"no folder, glob or URL matches {loc}")
        return sorted(str(p) for p in root.rglob("*") if p.is_file() and is_midi_name(p.name))

    def songs(self) -> Iterator[Song]:
        groups: dict[str, list[str]] = defaultdict(list)
        for f in self.files():
            p = PurePosixPath(f.split("://")[-1])
            key = p.parent.name if self.group_by == "parent" else p.name.rsplit(".", 1)[0]
            groups[key].append(f)
        for song_id in sorted(groups):
            yield Song(song_id, tuple(MidiSource(f, name=self._relative(f))
                                      for f in sorted(groups[song_id])))

    def _relative(self, found: str) -> str:
        """A file's name below the corpus location (URLs compared without protocol)."""
        def bare(s: str) -> str:
            return s.split("://", 1)[-1].lstrip("/") if "://" in s else s

        root = bare(self.location).rstrip("/") + "/"
        return bare(found).removeprefix(root)

    def describe(self) -> dict:
        return {"src": self.name, "path": self.location, "group_by": self.group_by}
