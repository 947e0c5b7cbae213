"""Near-duplicate files grouped into songs, from their fingerprints (``dedup.py``).

Two files are versions of one song when they share at least ``threshold`` shingles
(default 24) and at least 1.5 % of the smaller file's. Shingles held by more than
``max_df`` files are generic figures and are not counted. Songs are the connected
components of those links, of the corpus's own songs (a Lakh MSD id, a ``clean_midi``
title) and of identical bytes. Counting is exact and out of core: shingles are spilled to
disk in hash buckets and counted one bucket at a time. Files holding exactly an earlier
file's shingles (twins: a copy re-saved, retitled, transposed) are linked to it at once and
stand for it in the counting, which then sees each distinct fingerprint once.

Where this is weak is measured in the README ("Songs and near-duplicates").
"""

from __future__ import annotations

import collections
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from musicpairs.dedup import DEFAULT_THRESHOLD

DEFAULT_MAX_DF = 256
# Up to this many files, shared_pairs counts in a dense n x n table (32 MB of int64).
_DENSE_FILES = 2048


class UnionFind:
    """Disjoint sets over 0..n-1; the root of a set is its smallest member."""

    def __init__(self, n: int):
        self.parent = np.arange(n, dtype=np.int64)

    def find(self, x: int) -> int:
        parent = self.parent
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:  # path compression
            parent[x], x = root, parent[x]
        return int(root)

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            lo, hi = (ra, rb) if ra < rb else (rb, ra)
            self.parent[hi] = lo

    def roots(self) -> np.ndarray:
        """int64 [n]: each member's root."""
        return np.array([self.find(i) for i in range(len(self.parent))], np.int64)


def shared_pairs(entries: Iterator[tuple[np.ndarray, np.ndarray]], max_df: int,
                 n_files: int | None = None, copies: np.ndarray | None = None,
                 ) -> tuple[np.ndarray, np.ndarray]:
    """How many shingles each pair of files shares, from one bucket of shingles.

    Args:
        entries: (shingle hashes uint32 [K], file indices uint32 [K]) chunks of a bucket.
        max_df: Shingles held by more files are not counted.
        n_files: Files in the corpus, when known: up to ``_DENSE_FILES`` of them the
            pairs are counted in an n x n table (one bincount) instead of by sorting.
        copies: int64 [n_files], how many files each file stands for (itself and its
            twins left out of the entries), so a shingle's files are counted in full.

    Returns:
        (pair keys uint64 [P] = ``low << 32 | high`` file index, counts int64 [P]),
        keys sorted and unique.
    """
    chunks = list(entries)
    if not chunks:
        return np.zeros(0, np.uint64), np.zeros(0, np.int64)
    # One uint64 sort key, shingle then file: one sort instead of a lexsort.
    key = (np.concatenate([c[0] for c in chunks]).astype(np.uint64) << np.uint64(32)
           | np.concatenate([c[1] for c in chunks]).astype(np.uint64))
    key.sort()
    h = key >> np.uint64(32)
    f = key & np.uint64(0xFFFFFFFF)
    # Runs of equal hashes: the files that hold one shingle.
    start = np.flatnonzero(np.r_[True, h[1:] != h[:-1]])
    length = np.diff(np.r_[start, len(h)])
    held_by = length
    if copies is not None and copies.max(initial=1) > 1:
        # A twin left out of the entries still holds its shingles: add it back, from the
        # few entries whose file stands for others.
        at = np.flatnonzero((copies > 1)[f])
        held_by = length + np.bincount(np.searchsorted(start, at, side="right") - 1,
                                       copies[f[at]] - 1, minlength=len(start)).astype(np.int64)
    keep = (length >= 2) & (held_by <= max_df)
    run = np.repeat(np.arange(len(start)), length)
    pos = np.flatnonzero(keep[run])
    run = run[pos]
    keys = []
    k = 1
    while len(pos):
        # Pairs (pos, pos + k) inside one run: a run of L files gives L - k of them, and
        # runs no longer than k drop out, so most work is done in the first few rounds.
        nxt = pos + k
        ok = nxt < start[run] + length[run]
        pos, run, nxt = pos[ok], run[ok], nxt[ok]
        if len(pos):
            keys.append((f[pos] << np.uint64(32)) | f[nxt])
        k += 1
    if not keys:
        return np.zeros(0, np.uint64), np.zeros(0, np.int64)
    pairs = np.concatenate(keys)
    if n_files is not None and n_files <= _DENSE_FILES:
        n = np.uint64(n_files)
        table = np.bincount((pairs >> np.uint64(32)) * n + (pairs & np.uint64(0xFFFFFFFF)),
                            minlength=n_files * n_files)
        cell = np.flatnonzero(table).astype(np.uint64)
        return (cell // n) << np.uint64(32) | cell % n, table[cell].astype(np.int64)
    pairs.sort()
    first = np.flatnonzero(np.r_[True, pairs[1:] != pairs[:-1]])
    return pairs[first], np.diff(np.r_[first, len(pairs)]).astype(np.int64)


# A cross-song match in a corpus that names its own songs (POP909, Bach) is reported
# when the smaller file's shingles are at least this much shared: a copy, not a likeness.
COPY_CONTAINMENT = 0.5
# Two files are versions when they share >= threshold shingles and at least this share
# of the smaller file's: big files share a few dozen generic figures by chance.
MIN_CONTAINMENT = 0.015


# --------------------------------------------------------------------------------------
# Grouping (on the driver)


@dataclass
class Grouping:
    """Which song each file of a corpus belongs to.

    Attributes:
        root: int64 [F], the group of each file: its first file in crawl order.
        how: The strongest link that put each file in its group: ``self`` (its group's
            first file), ``corpus`` (the corpus names them one song), ``md5``,
            ``content``, ``list`` (``--groups``).
        similarity: float32 [F], shared shingles over the smaller file's shingles,
            against the group's first file (1 for itself; 0 when linked only through
            other files or by name; 1 for a twin of the first file).
        shingles: int64 [F], shingles per file.
        copies: (file, file, similarity) of cross-song copies found in a corpus whose
            songs are its own (nothing merged there).
    """

    root: np.ndarray
    how: list[str]
    similarity: np.ndarray
    shingles: np.ndarray
    copies: list[tuple[int, int, float]]


def shingle_digest(shingles: np.ndarray) -> int:
    """A 63-bit digest of a fingerprint: files with equal digests hold the same shingles
    (0 for an empty one)."""
    import hashlib

    if not len(shingles):
        return 0
    return int.from_bytes(hashlib.blake2b(shingles.tobytes(), digest_size=8).digest(),
                          "big") >> 1 or 1


def twins(digest: np.ndarray, counts: np.ndarray, threshold: int) -> np.ndarray:
    """int64 [F]: for each file, the first file holding exactly its shingles (itself when
    none comes before it). Only fingerprints of at least ``threshold`` shingles count:
    such twins are versions of each other however the threshold reads."""
    twin = np.arange(len(digest))
    big = np.flatnonzero((digest != 0) & (counts >= threshold))
    if len(big):
        order = big[np.argsort(digest[big], kind="stable")]
        d = digest[order]
        first = np.flatnonzero(np.r_[True, d[1:] != d[:-1]])
        twin[order] = order[first][np.cumsum(np.r_[True, d[1:] != d[:-1]]) - 1]
    return twin


def read_fingerprints(folder: str | Path, n_files: int,
                      ) -> tuple[list[str], np.ndarray, np.ndarray]:
    """md5, shingle count and shingle digest of every file, from the fingerprint tables
    (in one read of each; the shingles themselves are read by the counting).

    Returns:
        (md5 of each file, "" where unknown; int64 [F] shingles per file; int64 [F] its
        ``shingle_digest``, 0 where a table has none).
    """
    import pyarrow.parquet as pq

    md5 = [""] * n_files
    counts = np.zeros(n_files, np.int64)
    digest = np.zeros(n_files, np.int64)
    for path in sorted(Path(folder).glob("part-*.parquet")):
        table = pq.ParquetFile(path)
        t = table.read(columns=[c for c in ("file", "md5", "n_shingles", "digest")
                                if c in table.schema_arrow.names])
        files = t.column("file").to_numpy()
        for f, m in zip(files.tolist(), t.column("md5").to_pylist(), strict=True):
            md5[f] = m
        counts[files] = t.column("n_shingles").to_numpy()
        if "digest" in t.column_names:
            digest[files] = t.column("digest").to_numpy()
    return md5, counts, digest


def _table_entries(path: Path, skip: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(shingle uint32 [K], file uint32 [K]) of one fingerprint table, less ``skip``'s
    files."""
    import pyarrow.parquet as pq

    t = pq.read_table(path, columns=["file", "shingles"])
    col = t.column("shingles").combine_chunks()
    values = col.values.to_numpy(zero_copy_only=False)
    lengths = np.diff(col.offsets.to_numpy())
    files = np.repeat(t.column("file").to_numpy(), lengths)
    keep = ~skip[files]
    return values[keep], files[keep].astype(np.uint32)


def _bucketed(folder: str | Path, buckets: int, skip: np.ndarray,
              ) -> Iterator[Iterator[tuple[np.ndarray, np.ndarray]]]:
    """The fingerprint tables' (shingle, file) entries, one bucket of hashes at a time.

    With more than one bucket the tables are read once and their entries spilled to one
    raw file per bucket, so the driver never holds more than a table and a bucket.
    """
    import tempfile

    paths = sorted(Path(folder).glob("part-*.parquet"))
    if buckets == 1:
        yield (_table_entries(path, skip) for path in paths)
        return
    with tempfile.TemporaryDirectory(dir=folder) as spill:
        sinks = [(Path(spill) / f"b{b:03d}.bin").open("wb") for b in range(buckets)]
        try:
            for path in paths:
                values, files = _table_entries(path, skip)
                bucket = values % np.uint32(buckets)
                order = np.argsort(bucket, kind="stable")
                cuts = np.searchsorted(bucket[order], np.arange(buckets + 1))
                for b in range(buckets):
                    sel = order[cuts[b] : cuts[b + 1]]
                    if len(sel):
                        sinks[b].write(np.stack([values[sel], files[sel]], 1).tobytes())
        finally:
            for sink in sinks:
                sink.close()
        for b in range(buckets):
            raw = np.fromfile(Path(spill) / f"b{b:03d}.bin", np.uint32).reshape(-1, 2)
            yield iter([(raw[:, 0], raw[:, 1])])


def group_files(corpus_song: np.ndarray, md5: list[str], counts: np.ndarray, *,
                folder: str | Path | None, mode: str, threshold: int = DEFAULT_THRESHOLD,
                lists: list[list[str]] | None = None, curated: bool = False,
                max_df: int = DEFAULT_MAX_DF, bucket_shingles: int = 8_000_000,
                digest: np.ndarray | None = None) -> Grouping:
    """Group a corpus's files into songs.

    Args:
        corpus_song: int64 [F], the corpus's song of each file (in crawl order).
        md5: Each file's md5 ("" where unknown).
        counts: int64 [F], shingles per file.
        folder: The fingerprint tables (content mode).
        mode: ``none`` (the corpus's songs), ``md5`` (and identical files), ``content``
            (and near-duplicates).
        threshold: Shingles two files must share to be versions of one song.
        lists: Published groups of md5s (``--groups``): used instead of content.
        curated: The corpus names its songs (POP909, Bach): they are kept, and content
            matches between them are only reported as ``copies``.
        max_df: Shingles held by more files are generic and not counted.
        bucket_shingles: About how many shingles the driver counts at once (the hash
            buckets the counting is split in: 15 for LMD-full's ~120 M shingles).
        digest: int64 [F], each file's ``shingle_digest`` (``read_fingerprints``): files
            holding the same shingles are linked at once and counted once. None: every
            file is counted.
    """
    n = len(corpus_song)
    own = np.arange(n)
    twin = own
    uf = UnionFind(n)
    first_of_song: dict[int, int] = {}
    for f, s in enumerate(corpus_song.tolist()):
        uf.union(first_of_song.setdefault(s, f), f)
    links: list[tuple[int, int, str]] = []
    if mode in ("md5", "content") and not curated:
        by_md5: dict[str, int] = {}
        for f, m in enumerate(md5):
            if m:
                if m in by_md5:
                    links.append((by_md5[m], f, "md5"))
                else:
                    by_md5[m] = f
    keys = np.zeros(0, np.uint64)               # pairs (low << 32 | high) sharing shingles
    shared = np.zeros(0, np.int64)              # and how many
    copies: list[tuple[int, int, float]] = []
    if lists is not None:
        by_md5 = {}
        for f, m in enumerate(md5):
            by_md5.setdefault(m, f)
        for group in lists:
            found = sorted(by_md5[m] for m in group if m in by_md5)
            links += [(found[0], f, "list") for f in found[1:]]
    elif mode == "content" and folder is not None:
        # Files holding exactly an earlier file's shingles are linked to it at once and
        # left out of the counting (Lakh's copies are often the same notes re-saved).
        # A corpus that names its songs links nothing: there every pair is counted.
        if not curated and digest is not None:
            twin = twins(digest, counts, threshold)
            links += [(int(twin[f]), int(f), "content") for f in np.flatnonzero(twin != own)]
        skip = twin != own
        buckets = max(1, -(-int(counts[~skip].sum()) // bucket_shingles))
        stands_for = np.bincount(twin, minlength=n)
        found = [shared_pairs(bucket, max_df, n, stands_for)
                 for bucket in _bucketed(folder, buckets, skip)]
        keys = np.concatenate([keys] + [k for k, _ in found])
        if len(keys):                           # a pair's counts, summed over buckets
            order = np.argsort(keys, kind="stable")
            keys = keys[order]
            first = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
            shared = np.add.reduceat(np.concatenate([c for _, c in found])[order], first)
            keys = keys[first]
        lo = (keys >> np.uint64(32)).astype(np.int64)
        hi = (keys & np.uint64(0xFFFFFFFF)).astype(np.int64)
        sim = shared / np.maximum(1, np.minimum(counts[lo], counts[hi]))
        if curated:
            pick = (sim >= COPY_CONTAINMENT) & (corpus_song[lo] != corpus_song[hi])
            copies = [(int(x), int(y), float(z)) for x, y, z in
                      zip(lo[pick], hi[pick], sim[pick], strict=True)]
        else:
            pick = (shared >= threshold) & (sim >= MIN_CONTAINMENT)
            links += [(int(x), int(y), "content") for x, y in
                      zip(lo[pick], hi[pick], strict=True)]
    else:
        sim = np.zeros(0)
    for a, b, _ in links:
        uf.union(a, b)
    root = uf.roots()
    # How a file joined its song: the strongest evidence it has.
    song_files = np.bincount(corpus_song)
    md5_files = collections.Counter(m for m in md5 if m)
    joined_by = "list" if lists is not None else "content" if mode == "content" else "md5"
    how = ["self" if root[f] == f else "corpus" if song_files[corpus_song[f]] > 1
           else "md5" if md5_files[md5[f]] > 1 else joined_by for f in range(n)]
    similarity = np.ones(n, np.float32)
    joined = np.flatnonzero(root != own)
    if len(joined):
        # Against the root, through a file's twin (the root is never a twin: a twin's
        # first file comes before it in the same group).
        other = twin[joined]
        want = (root[joined].astype(np.uint64) << np.uint64(32)) | other.astype(np.uint64)
        at = np.searchsorted(keys, want).clip(max=max(len(keys) - 1, 0))
        hit = (keys[at] == want) if len(keys) else np.zeros(len(want), bool)
        similarity[joined] = np.where(other == root[joined], 1.0,
                                      np.where(hit, sim[at] if len(keys) else 0.0, 0.0))
    return Grouping(root, how, similarity, counts, sorted(copies))
