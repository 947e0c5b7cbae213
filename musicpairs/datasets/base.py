"""What every corpus yields: songs, each with its MIDI versions (files or archive members)."""

from __future__ import annotations

import tarfile
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from musicpairs.errors import MidiReadError

MIDI_SUFFIXES = (".mid", ".midi", ".kar", ".smf")


@dataclass(frozen=True)
class MidiSource:
    """Where one MIDI file's bytes are.

    Attributes:
        uri: Where the bytes are: a path, an fsspec URL, ``ARCHIVE::MEMBER`` for a tar
            member, ``music21:NAME`` for a bundled score. Used in the rejects table.
        data: The bytes, when the crawler already holds them (archives read in one pass);
            None to read ``uri`` when needed.
        md5: The file's MD5 when known (Lakh), for de-duplication.
        name: The file's name inside its corpus (``001/versions/001-v1.mid``,
            ``lmd_full/a/abc.mid``): the same whether the corpus is a folder or an archive
            and wherever it sits, so pair ids built from it are stable. Defaults to uri.
    """

    uri: str
    data: bytes | None = field(default=None, repr=False, compare=False)
    md5: str | None = None
    name: str = ""

    def __post_init__(self):
        if not self.name:
            object.__setattr__(self, "name", self.uri)

    def read_bytes(self) -> bytes:
        """The file's bytes.

        Raises:
            MidiReadError: The file cannot be opened.
        """
        if self.data is not None:
            return self.data
        if self.uri.startswith("music21:"):
            from musicpairs.datasets.bach import chorale_midi_bytes

            return chorale_midi_bytes(self.uri.removeprefix("music21:"))
        if "://" in self.uri:
            import fsspec

            try:
                with fsspec.open(self.uri, "rb") as fh:
                    return fh.read()
            except (OSError, ValueError) as e:
                raise MidiReadError(self.uri, f"cannot open: {e}") from e
        try:
            return Path(self.uri).read_bytes()
        except OSError as e:
            raise MidiReadError(self.uri, f"cannot open: {e.strerror or e}") from e



@dataclass(frozen=True)
class Song:
    """A song and its versions (one or more MIDI files of the same piece).

    Attributes:
        song_id: Stable id within the corpus (decides the split).
        versions: The MIDI files, in a stable order.
        meta: Small JSON-ready facts about the song (artist, title, match scores...).
    """

    song_id: str
    versions: tuple[MidiSource, ...]
    meta: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class CrawlReject:
    """An input the crawler saw and did not use (a duplicate, a refused archive member)."""

    file: str
    song_id: str
    reason: str


class Corpus(ABC):
    """A source of songs. Subclasses crawl one layout; ``songs()`` is deterministic.

    Inputs the crawl refuses are appended to ``self.rejected`` while ``songs()`` runs.
    """

    name: str = "corpus"

    def __init__(self):
        self.rejected: list[CrawlReject] = []

    @abstractmethod
    def songs(self) -> Iterator[Song]:
        """Every song, in a stable order (the same on every run over the same input)."""

    def describe(self) -> dict:
        """JSON-ready description written into the build's config."""
        return {"src": self.name}


def is_midi_name(name: str) -> bool:
    return name.lower().endswith(MIDI_SUFFIXES)


def safe_member_name(name: str) -> bool:
    """Whether a tar member name stays inside its folder (no absolute path, no ``..``)."""
    p = PurePosixPath(name)
    return not p.is_absolute() and ".." not in p.parts and not name.startswith(("/", "\\"))


def iter_tar_midi(archive: str | Path) -> Iterator[tuple[str, bytes | None, str | None]]:
    """Stream a tar(.gz) archive once, in place, yielding its MIDI members.

    Yields:
        (member name, bytes, None) for each regular MIDI member, and
        (member name, None, reason) for a member that is refused (a name escaping the
        archive's folder, a link), so that it can go to the rejects table.
    """
    # Stream mode: one forward pass over the compressed archive, no seeking back.
    with tarfile.open(archive, mode="r|*") as tar:
        for member in tar:
            if not is_midi_name(member.name):
                continue
            if not safe_member_name(member.name):
                yield member.name, None, "member name escapes the archive folder"
                continue
            if not member.isfile():
                yield member.name, None, "not a regular file (link or device)"
                continue
            fh = tar.extractfile(member)
            yield member.name, fh.read() if fh else b"", None
