"""The build's song stage: files crawled, fingerprinted on Dask, grouped into songs.

The crawl gives every file a number (its place in crawl order) and the corpus's song.
With ``--dedup content`` one Dask task per partition (the files of ``songs_per_shard``
songs) fingerprints them (``dedup.fingerprint_files`` and ``lyrics.py``) and writes
``_build/fingerprints/part-NNNNN.parquet``; a resumed build keeps those it finds. The
driver then groups the files (``grouping.group_files``) and writes ``OUT/songs.parquet``, one
row per file: its song, split and group. Pairing reads the corpus again and gives out
each file under its song's id, hence its song's split. version2version gets whole songs,
every version in one task, so it pairs the versions found by content; melody tasks get
files as they are crawled, so an archive's bytes are never held for a song to complete.
(Whole songs from an archive hold their members' bytes until the song's last file is
read.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from musicpairs.datasets.base import MidiSource, Song
from musicpairs.dedup import (
    FINGERPRINT_VERSION,
    fingerprint_files,
    midi_track_lines,
    with_words,
)
from musicpairs.errors import MusicpairsError
from musicpairs.grouping import group_files, read_fingerprints, shingle_digest
from musicpairs.grouplists import read_group_lists
from musicpairs.lyrics import lyric_shingles

FINGERPRINTS = "fingerprints"
SONGS_FILE = "songs.parquet"


@dataclass
class FileList:
    """What the driver keeps of each crawled file (no bytes)."""

    name: list[str]
    uri: list[str]
    md5: list[str]
    song: list[int]             # the corpus's song number
    song_ids: list[str]         # the corpus's song ids, by song number


def crawl_songs(corpus, limit: int | None) -> Iterator[Song]:
    """The corpus's songs in crawl order, at most ``limit``."""
    for n, song in enumerate(corpus.songs()):
        if limit is not None and n >= limit:
            return
        yield song


def fingerprint_partition(index: int, files: list[tuple[int, object]], folder: str,
                          content: bool) -> dict:
    """Fingerprint one partition of files; write ``folder/part-NNNNN.parquet`` atomically.

    Args:
        index: The partition's number.
        files: (file number in crawl order, ``MidiSource``) of each file.
        folder: Where the partition's table goes.
        content: Compute shingles; False computes md5s only (``--dedup md5``).

    Returns:
        A small record: the partition, files, and how many could not be read.
    """
    import hashlib

    import pyarrow as pa
    import pyarrow.parquet as pq

    from musicpairs.errors import MidiReadError
    from musicpairs.shards import atomic_write_bytes

    numbers, md5s, shingles, errors = [], [], [], []
    parsed = []                                 # (file's place, tracks, ticks per quarter)
    for number, source in files:
        numbers.append(number)
        try:
            data = source.read_bytes()
        except MidiReadError as e:
            md5s.append(source.md5 or "")
            shingles.append(np.zeros(0, np.uint32))
            errors.append(e.reason)
            continue
        md5s.append(source.md5 or hashlib.md5(data).hexdigest())  # noqa: S324 - a file id
        error = ""
        words = np.zeros(0, np.uint32)
        if content:
            try:
                parsed.append((len(shingles), *midi_track_lines(data, source.uri)))
                words = lyric_shingles(data)
            except MidiReadError as e:
                error = e.reason
        shingles.append(words)
        errors.append(error)
    # The melodic shingles of every readable file at once (fingerprint_files).
    melodic = fingerprint_files([(tracks, tpq) for _, tracks, tpq in parsed])
    for (at, _, _), found in zip(parsed, melodic, strict=True):
        shingles[at] = with_words(found, shingles[at])
    offsets = np.zeros(len(shingles) + 1, np.int32)
    np.cumsum([len(s) for s in shingles], out=offsets[1:])
    values = np.concatenate(shingles) if shingles else np.zeros(0, np.uint32)
    table = pa.table({
        "file": pa.array(numbers, pa.int64()),
        "md5": pa.array(md5s, pa.string()),
        "n_shingles": pa.array([len(x) for x in shingles], pa.int32()),
        "shingles": pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, pa.uint32())),
        "digest": pa.array([shingle_digest(x) for x in shingles], pa.int64()),
        "error": pa.array(errors, pa.string()),
    }, metadata={"musicpairs_fingerprint": str(FINGERPRINT_VERSION)})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    atomic_write_bytes(Path(folder) / f"part-{index:05d}.parquet", sink.getvalue().to_pybytes())
    return {"index": index, "files": len(numbers), "unreadable": sum(map(bool, errors))}


def fingerprint_corpus(corpus, limit: int | None, songs_per_partition: int, folder: Path,
                       content: bool, submit: Callable[..., None]) -> FileList:
    """Crawl the corpus; submit a fingerprint task for each partition not yet on disk.

    Args:
        submit: Called as ``submit(fingerprint_partition, index, files, folder,
            content)``; it returns once the task is under way.

    Returns:
        The files, in crawl order.
    """
    files = FileList([], [], [], [], [])
    batch: list[tuple[int, MidiSource]] = []
    index = 0

    def flush():
        nonlocal batch, index
        # Without content, a task only hashes files whose md5 the corpus does not give.
        needed = content or any(not source.md5 for _, source in batch)
        if needed and batch and not _current(folder / f"part-{index:05d}.parquet"):
            submit(fingerprint_partition, index, batch, str(folder), content)
        batch = []
        index += 1

    for song in crawl_songs(corpus, limit):
        files.song_ids.append(song.song_id)
        for source in song.versions:
            number = len(files.name)
            files.name.append(source.name)
            files.uri.append(source.uri)
            files.md5.append(source.md5 or "")
            files.song.append(len(files.song_ids) - 1)
            batch.append((number, source))
        if len(files.song_ids) % songs_per_partition == 0:
            flush()
    flush()
    return files


def _current(path: Path) -> bool:
    """Whether a fingerprint table is on disk, written by this version of the shingles
    (a build resumed after an upgrade computes the others again)."""
    import pyarrow.parquet as pq

    if not path.is_file():
        return False
    meta = pq.read_schema(path).metadata or {}
    return meta.get(b"musicpairs_fingerprint") == str(FINGERPRINT_VERSION).encode()


def group_corpus(files: FileList, folder: Path, *, mode: str, threshold: int,
                 groups: str | None, curated: bool, split_of: Callable[[str], str]):
    """Group the crawled files into songs and describe them, one row per file.

    Returns:
        A pyarrow Table in ``songs.parquet``'s schema (see ``write_songs``).
    """
    import pyarrow as pa

    n = len(files.name)
    md5, counts, digest = (read_fingerprints(folder, n) if folder.is_dir()
                           else (list(files.md5), np.zeros(n, np.int64), None))
    md5 = [m or known for m, known in zip(md5, files.md5, strict=True)]
    lists = read_group_lists(groups) if groups else None
    g = group_files(np.asarray(files.song, np.int64), md5, counts,
                    folder=folder if folder.is_dir() else None, mode=mode,
                    threshold=threshold, lists=lists, curated=curated, digest=digest)
    root = g.root
    size = np.bincount(root, minlength=n)[root]
    song_id = [files.song_ids[files.song[r]] for r in root.tolist()]
    copy_of = [""] * n
    for a, b, _ in g.copies:
        copy_of[a] = copy_of[a] or files.name[b]
        copy_of[b] = copy_of[b] or files.name[a]
    return pa.table({
        "file": pa.array(files.name, pa.string()),
        "uri": pa.array(files.uri, pa.string()),
        "md5": pa.array(md5, pa.string()),
        "song_id": pa.array(song_id, pa.string()),
        "split": pa.array([split_of(s) for s in song_id], pa.string()),
        "group_size": pa.array(size, pa.int32()),
        "representative": pa.array([files.name[r] for r in root.tolist()], pa.string()),
        "similarity": pa.array(g.similarity, pa.float32()),
        "linked_by": pa.array(g.how, pa.string()),
        "shingles": pa.array(g.shingles, pa.int32()),
        "copy_of": pa.array(copy_of, pa.string()),
    })


def write_songs(out: Path, table) -> None:
    """``OUT/songs.parquet``, atomically.

    One row per crawled file, in crawl order: ``file`` (its name in the corpus), ``uri``,
    ``md5``, ``song_id`` and ``split`` (shared by every file of a song),
    ``group_size`` (files of its song), ``representative`` (the song's first file),
    ``similarity`` (shared shingles over the smaller file's, against the
    representative), ``linked_by`` (``self``, ``corpus``, ``md5``, ``content`` or
    ``list``), ``shingles`` (its fingerprint's size), ``copy_of`` (in a corpus that names
    its own songs: a file of another song it copies, else "").
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from musicpairs.shards import atomic_write_bytes

    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    atomic_write_bytes(out / SONGS_FILE, sink.getvalue().to_pybytes())


def grouped_songs(corpus, limit: int | None, table, keep: str, together: bool,
                  ) -> Iterator[Song]:
    """The corpus read again, its files given out under their songs of ``table``.

    Args:
        keep: ``all`` files, or ``one``: only each song's representative.
        together: Yield each song whole, once all its files have been crawled, its
            versions in crawl order (version2version pairs them). Otherwise each file is
            yielded as it is crawled, as a one-version song under its song's id (melody
            tasks pair files alone), so an archive's bytes are never held back.

    Raises:
        MusicpairsError: The corpus no longer matches ``table``.
    """
    song_id = table.column("song_id").to_pylist()
    rep = table.column("representative").to_pylist()
    name = table.column("file").to_pylist()
    size = table.column("group_size").to_numpy()
    first = {}
    for f, r in enumerate(rep):
        first.setdefault(r, f)
    root = [first[r] for r in rep]
    pending: dict[int, list[tuple[int, MidiSource]]] = {}
    number = 0
    for song in crawl_songs(corpus, limit):
        for source in song.versions:
            f = number
            number += 1
            if f >= len(name) or name[f] != source.name:
                raise MusicpairsError(f"the corpus changed since {SONGS_FILE} was written "
                                      f"(file {f}: {source.name}); build into a new folder")
            r = root[f]
            if keep == "one" and f != r:
                continue
            if not together:
                yield Song(song_id[f], (source,))
                continue
            members = pending.setdefault(r, [])
            members.append((f, source))
            if keep == "one" or len(members) == size[f]:
                del pending[r]
                yield Song(song_id[f], tuple(s for _, s in sorted(members, key=lambda m: m[0])))


def dedup_summary(table, largest: int = 10) -> dict:
    """Counts of a ``songs.parquet`` table: songs, files in multi-file songs, copies,
    and the largest songs as (song id, files)."""
    import collections

    song_id = table.column("song_id").to_pylist()
    sizes = collections.Counter(song_id)
    return {
        "files": len(song_id),
        "songs": len(sizes),
        "files_in_shared_songs": sum(n for n in sizes.values() if n > 1),
        "linked_by": dict(sorted(collections.Counter(table.column("linked_by").to_pylist())
                                 .items())),
        "cross_song_copies": sum(map(bool, table.column("copy_of").to_pylist())),
        "largest": [[s, n] for s, n in sorted(sizes.items(), key=lambda x: (-x[1], x[0]))
                    [:largest] if n > 1],
    }
