"""The Lakh MIDI Dataset, as folders or as its release archives read in place.

Layouts under one root (any subset):

* ``lmd_matched/A/B/C/<MSD_ID>/<md5>.mid`` and ``lmd_aligned/...`` (same layout): song =
  MSD id. One MIDI may sit under several MSD ids: it goes to the one with the best score in
  ``match_scores.json`` (``{msd_id: {md5: score}}``), else the first id in sorted order.
* ``clean_midi/<Artist>/<Title>.mid`` with further versions ``<Title>.1.mid``...:
  song = ``Artist/Title``.
* ``lmd_full/<hex>/<md5>.mid``: song = md5.

Each layout may instead be its archive, ``<layout>.tar.gz``, streamed once and never
extracted; members named outside their folder (``../x.mid``, absolute paths) or links are
refused. Each MIDI file (by md5: its name in lmd_*, its content's hash in clean_midi) is
used once, first by matched, then aligned, clean_midi, full; later copies are rejected as
duplicates.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from musicpairs.datasets.base import (
    Corpus,
    CrawlReject,
    MidiSource,
    Song,
    is_midi_name,
    iter_tar_midi,
)

LAYOUTS = ("lmd_matched", "lmd_aligned", "clean_midi", "lmd_full")
_VERSION_SUFFIX = re.compile(r"^(.*?)(?:\.(\d+))?$")


class LakhCorpus(Corpus):
    name = "lakh"

    def __init__(self, root: str | Path):
        super().__init__()
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"Lakh folder not found: {self.root}")
        self.layouts = [name for name in LAYOUTS if (self.root / name).is_dir()
                        or (self.root / f"{name}.tar.gz").is_file()]
        if not self.layouts:
            raise FileNotFoundError(
                f"{self.root} holds none of {', '.join(LAYOUTS)} (as folders or .tar.gz)")

    def describe(self) -> dict:
        return {"src": self.name, "path": str(self.root), "layouts": self.layouts}

    def _entries(self, layout: str) -> Iterator[tuple[PurePosixPath, MidiSource]]:
        """(path inside the layout, source) of each MIDI file, folder or archive."""
        folder = self.root / layout
        if folder.is_dir():
            for f in sorted(p for p in folder.rglob("*") if p.is_file() and is_midi_name(p.name)):
                rel = PurePosixPath(f.relative_to(folder).as_posix())
                yield rel, MidiSource(str(f), name=f"{layout}/{rel}")
            return
        archive = self.root / f"{layout}.tar.gz"
        for member, data, refused in iter_tar_midi(archive):
            uri = f"{archive}::{member}"
            if refused:
                self.rejected.append(CrawlReject(uri, "", refused))
                continue
            rel = PurePosixPath(member)
            if rel.parts and rel.parts[0] == layout:
                rel = PurePosixPath(*rel.parts[1:])
            yield rel, MidiSource(uri, data, name=f"{layout}/{rel}")

    def _scores(self) -> dict[str, dict[str, float]]:
        path = self.root / "match_scores.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    def songs(self) -> Iterator[Song]:
        claimed: dict[str, str] = {}  # md5 -> song id that uses it

        def claim(md5: str, song_id: str, uri: str) -> bool:
            owner = claimed.setdefault(md5, song_id)
            if owner != song_id or md5 in seen_in_song.get(song_id, ()):
                self.rejected.append(CrawlReject(uri, song_id,
                                                 f"duplicate: md5 {md5} is used by {owner}"))
                return False
            seen_in_song[song_id].add(md5)
            return True

        seen_in_song: dict[str, set[str]] = defaultdict(set)
        for layout in self.layouts:
            if layout in ("lmd_matched", "lmd_aligned"):
                yield from self._matched(layout, claim)
            elif layout == "clean_midi":
                yield from self._clean(claim)
            else:
                for rel, src in self._entries(layout):
                    md5 = rel.name.rsplit(".", 1)[0]
                    if claim(md5, md5, src.uri):
                        yield Song(md5, (MidiSource(src.uri, src.data, md5, src.name),))

    def _matched(self, layout: str, claim) -> Iterator[Song]:
        scores = self._scores()
        by_md5: dict[str, list[tuple[str, MidiSource]]] = defaultdict(list)
        for rel, src in self._entries(layout):
            if len(rel.parts) < 2:
                self.rejected.append(CrawlReject(src.uri, "", "not under an MSD id folder"))
                continue
            by_md5[rel.name.rsplit(".", 1)[0]].append((rel.parts[-2], src))
        songs: dict[str, list[MidiSource]] = defaultdict(list)
        for md5, places in by_md5.items():
            places.sort(key=lambda p: (-scores.get(p[0], {}).get(md5, 0.0), p[0]))
            msd_id, src = places[0]
            if claim(md5, msd_id, src.uri):
                songs[msd_id].append(MidiSource(src.uri, src.data, md5, src.name))
            for other, dup in places[1:]:
                self.rejected.append(CrawlReject(
                    dup.uri, other, f"duplicate: md5 {md5} is used by {msd_id}"))
        for msd_id in sorted(songs):
            yield Song(msd_id, tuple(sorted(songs[msd_id], key=lambda s: s.name)))

    def _clean(self, claim) -> Iterator[Song]:
        songs: dict[str, list[MidiSource]] = defaultdict(list)
        for rel, src in self._entries("clean_midi"):
            if len(rel.parts) < 2:
                self.rejected.append(CrawlReject(src.uri, "", "not under an artist folder"))
                continue
            title = _VERSION_SUFFIX.match(rel.name.rsplit(".", 1)[0])[1]
            song_id = f"{rel.parts[-2]}/{title}"
            try:
                data = src.read_bytes()
            except Exception as e:  # noqa: BLE001 - an unreadable file is a reject, later
                self.rejected.append(CrawlReject(src.uri, song_id, f"cannot open: {e}"))
                continue
            md5 = hashlib.md5(data).hexdigest()  # noqa: S324 - Lakh names files by MD5
            if claim(md5, song_id, src.uri):
                # Folder files are read again by the worker; archive bytes travel along.
                songs[song_id].append(MidiSource(src.uri, src.data, md5, src.name))
        for song_id in sorted(songs):
            yield Song(song_id, tuple(sorted(songs[song_id], key=lambda s: s.name)))
