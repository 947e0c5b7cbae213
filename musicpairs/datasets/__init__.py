"""Corpora: one module per layout, all yielding :class:`~musicpairs.datasets.base.Song`."""

from __future__ import annotations

from musicpairs.datasets.base import Corpus, CrawlReject, MidiSource, Song

SOURCES = ("bach", "pop909", "lakh", "folder")


def make_corpus(src: str, path: str | None = None, *, group_by: str = "file") -> Corpus:
    """The corpus named by ``--src``.

    Raises:
        ValueError: Unknown source, or a path missing where one is needed.
        FileNotFoundError: The path does not hold that corpus.
    """
    if src == "bach":
        from musicpairs.datasets.bach import BachCorpus

        return BachCorpus()
    if src not in SOURCES:
        raise ValueError(f"unknown source {src!r}; choose one of {', '.join(SOURCES)}")
    if not path:
        raise ValueError(f"--src {src} needs --path")
    if src == "pop909":
        from musicpairs.datasets.pop909 import Pop909Corpus

        return Pop909Corpus(path)
    if src == "lakh":
        from musicpairs.datasets.lakh import LakhCorpus

        return LakhCorpus(path)
    from musicpairs.datasets.folder import FolderCorpus

    return FolderCorpus(path, group_by=group_by)


__all__ = ["SOURCES", "Corpus", "CrawlReject", "MidiSource", "Song", "make_corpus"]
