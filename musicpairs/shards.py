"""The shard format, described once: Parquet files of pair windows, and their reader.

A dataset folder holds ``manifest.json``, ``<split>/part-NNNNN.parquet`` and
``rejects.parquet``. Rolls are ``fixed_size_binary`` columns holding the C-order bytes of
uint8 arrays (``fixed_shape_tensor`` decodes ~20x slower through Parquet); nothing is
pickled, so pyarrow, pandas, polars, duckdb or HF datasets can open a shard. Each file's
schema metadata key ``musicpairs`` holds JSON: ``schema_version``, ``task``,
``steps_per_beat``, ``source_shape``, ``target_shape``, ``dtype``, ``source_channels``,
``target_channels``. Each roll is its own LZ4 data page; ``musicpairs.pages`` reads rolls
page by page (the loader's path).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from musicpairs.errors import MusicpairsError

SCHEMA_VERSION = 1
METADATA_KEY = b"musicpairs"
SPLITS = ("train", "valid", "test")
ROW_GROUP_ROWS = 128  # ~16 MiB of rolls at [2, 128, 256] + [2, 128, 256]
COMPRESSION = "zstd"
COMPRESSION_LEVEL = 3
# Rolls are LZ4 (Parquet LZ4_RAW), one block per roll: on sparse rolls it decompresses
# ~5x faster than zstd (which bounds the loader) and compresses faster, for ~5x the bytes
# (a POP909 pair: ~3.0 KB against ~0.6 KB). The other columns are zstd.
ROLL_COMPRESSION = "lz4"
# Dictionary-encoded: the repetitive string columns (not pair_id, not the rolls).
_DICTIONARY_COLUMNS = ["song_id", "split", "source_file", "target_file"]


class ShardError(MusicpairsError):
    """A file is not a readable musicpairs shard; the message names it and says why."""


@dataclass(frozen=True)
class ShardMeta:
    """What every shard of a dataset says about its rolls."""

    task: str
    steps_per_beat: int
    source_shape: tuple[int, int, int]
    target_shape: tuple[int, int, int]
    source_channels: tuple[str, ...]
    target_channels: tuple[str, ...]
    dtype: str = "uint8"
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> ShardMeta:
        d = json.loads(text)
        for key in ("source_shape", "target_shape", "source_channels", "target_channels"):
            d[key] = tuple(d[key])
        return cls(**d)

    @property
    def source_bytes(self) -> int:
        return int(np.prod(self.source_shape))

    @property
    def target_bytes(self) -> int:
        return int(np.prod(self.target_shape))


def pair_schema(meta: ShardMeta) -> pa.Schema:
    """The Arrow schema of a shard, with ``meta`` in its metadata."""
    return pa.schema(
        [
            ("pair_id", pa.string()),
            ("song_id", pa.string()),
            ("split", pa.string()),
            # Required (never null): pages hold nothing but the rolls' bytes.
            pa.field("source", pa.binary(meta.source_bytes), nullable=False),
            pa.field("target", pa.binary(meta.target_bytes), nullable=False),
            ("confidence", pa.float32()),
            ("source_file", pa.string()),
            ("target_file", pa.string()),
            ("start_beat", pa.float64()),
        ],
        metadata={METADATA_KEY: meta.to_json().encode()},
    )


REJECTS_SCHEMA = pa.schema(
    [("file", pa.string()), ("song_id", pa.string()), ("stage", pa.string()),
     ("reason", pa.string())]
)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write a file so that it appears whole or not at all (temporary name, then rename)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as fh:  # noqa: PTH123
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:  # noqa: PTH123
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class ShardWriter:
    """Write pairs of one split into one Parquet shard, atomically.

    Rows go to a temporary file next to the final name; ``close()`` renames it, so no
    partial file ever sits under a final shard name. Use as a context manager; an error
    inside the block removes the temporary file.
    """

    def __init__(self, path: str | Path, meta: ShardMeta, split: str):
        self.path = Path(path)
        self.meta = meta
        self.split = split
        self.schema = pair_schema(meta)
        self.rows = 0
        self._tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # One data page per roll (pages close once they hold a roll's bytes, checked
        # after every row), so a reader can decompress any roll on its own, straight
        # into a batch; the small columns stay one page per row group. LZ4 blocks of
        # one roll also compress faster than blocks of a whole row group (in cache).
        # Rolls are never dictionary-encoded: every row is distinct, and trying costs a
        # hash of every roll plus a discarded dictionary page (~15 % of a build).
        compression = {name: COMPRESSION for name in self.schema.names}
        compression.update(source=ROLL_COMPRESSION, target=ROLL_COMPRESSION)
        self._writer = pq.ParquetWriter(self._tmp, self.schema, compression=compression,
                                        compression_level={n: COMPRESSION_LEVEL for n in
                                                           self.schema.names if
                                                           compression[n] == "zstd"},
                                        data_page_size=min(meta.source_bytes,
                                                           meta.target_bytes),
                                        write_batch_size=1,
                                        use_dictionary=_DICTIONARY_COLUMNS,
                                        write_statistics=["pair_id", "song_id", "split"])
        # One row group of rolls: each pair is copied once, into memory that is already
        # mapped. Buffers come from a per-thread pool and go back on close: fresh 8 MiB
        # allocations fault every page in again, which costs more than compressing them.
        self._source = _take_buffer(meta.source_shape)
        self._target = _take_buffer(meta.target_shape)
        # The other columns of the buffered rows (not the Pairs: they may hold views of
        # a whole song's rolls).
        self._buffer: list[tuple] = []

    def write(self, pair) -> None:
        """Add one Pair (see ``musicpairs.pairing.Pair``)."""
        if pair.source.shape != self.meta.source_shape or pair.source.dtype != np.uint8:
            raise ValueError(f"source {pair.source.dtype}{pair.source.shape} is not uint8"
                             f"{self.meta.source_shape}")
        if pair.target.shape != self.meta.target_shape or pair.target.dtype != np.uint8:
            raise ValueError(f"target {pair.target.dtype}{pair.target.shape} is not uint8"
                             f"{self.meta.target_shape}")
        n = len(self._buffer)
        self._source[n] = pair.source
        self._target[n] = pair.target
        self._buffer.append((pair.pair_id, pair.song_id, pair.confidence, pair.source_file,
                             pair.target_file, pair.start_beat))
        if n + 1 == ROW_GROUP_ROWS:
            self._flush()

    def _flush(self) -> None:
        if not self._buffer:
            return
        n = len(self._buffer)
        pair_ids, song_ids, confidence, source_files, target_files, start_beats = zip(
            *self._buffer, strict=True)
        table = pa.Table.from_arrays(
            [
                pa.array(pair_ids, pa.string()),
                pa.array(song_ids, pa.string()),
                pa.array([self.split] * n, pa.string()),
                _binary_column(self._source[:n], self.meta.source_bytes),
                _binary_column(self._target[:n], self.meta.target_bytes),
                pa.array(confidence, pa.float32()),
                pa.array(source_files, pa.string()),
                pa.array(target_files, pa.string()),
                pa.array(start_beats, pa.float64()),
            ],
            schema=self.schema,
        )
        self._writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
        self.rows += n
        self._buffer = []

    def close(self) -> dict[str, Any]:
        """Finish the file and move it to its final name.

        Returns:
            ``{"path", "split", "rows", "bytes", "sha256"}`` of the shard.
        """
        self._flush()
        self._writer.close()
        self._release()
        with open(self._tmp, "rb+") as fh:  # noqa: PTH123
            os.fsync(fh.fileno())
        self._tmp.replace(self.path)
        return {"path": str(self.path), "split": self.split, "rows": self.rows,
                "bytes": self.path.stat().st_size, "sha256": sha256_file(self.path)}

    def abort(self) -> None:
        self._writer.close()
        self._release()
        self._tmp.unlink(missing_ok=True)

    def _release(self) -> None:
        if self._source is not None:
            _give_back(self._source)
            _give_back(self._target)
            self._source = self._target = None

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, *_):
        if exc_type is not None:
            self.abort()


class ShardReader:
    """Read a musicpairs shard: its metadata, and rows decoded to arrays.

    Raises:
        ShardError: The file is missing, not Parquet, truncated, or not a musicpairs shard.
    """

    def __init__(self, path, filesystem=None):
        """``path``: a path (on ``filesystem``, a pyarrow filesystem, if given) or an open
        binary file."""
        is_file = hasattr(path, "read")
        self.path = str(getattr(path, "name", path)) if is_file else str(path)
        try:
            if is_file:
                self.file = pq.ParquetFile(path)
            else:
                self.file = pq.ParquetFile(self.path, filesystem=filesystem) if filesystem \
                    else pq.ParquetFile(self.path)
        except FileNotFoundError as e:
            raise ShardError(f"{self.path}: no such file") from e
        except (pa.ArrowInvalid, OSError) as e:
            raise ShardError(f"{self.path}: not a readable Parquet file ({e})") from e
        raw = (self.file.schema_arrow.metadata or {}).get(METADATA_KEY)
        if raw is None:
            raise ShardError(f"{self.path}: Parquet, but not a musicpairs shard "
                             "(no 'musicpairs' schema metadata)")
        try:
            self.meta = ShardMeta.from_json(raw)
        except (ValueError, TypeError, KeyError) as e:
            raise ShardError(f"{self.path}: unreadable musicpairs metadata ({e})") from e

    @property
    def num_rows(self) -> int:
        return self.file.metadata.num_rows

    @property
    def num_row_groups(self) -> int:
        return self.file.num_row_groups

    def read_row_group(self, i: int, columns: list[str] | None = None) -> pa.Table:
        """Row group ``i`` as a table.

        Raises:
            ShardError: The row group cannot be read (a damaged file).
        """
        try:
            return self.file.read_row_group(i, columns=columns)
        except (pa.ArrowException, OSError) as e:
            raise ShardError(f"{self.path}: row group {i} is unreadable ({e})") from e

    def decode(self, table: pa.Table) -> Iterator[dict[str, Any]]:
        """Rows of a table as dicts; ``source`` and ``target`` as uint8 arrays (views)."""
        src = decode_rolls(table.column("source"), self.meta.source_shape)
        tgt = decode_rolls(table.column("target"), self.meta.target_shape)
        rest = {c: table.column(c).to_pylist() for c in table.column_names
                if c not in ("source", "target")}
        for i in range(table.num_rows):
            row = {c: v[i] for c, v in rest.items()}
            row["source"], row["target"] = src[i], tgt[i]
            yield row

    def rows(self) -> Iterator[dict[str, Any]]:
        for g in range(self.num_row_groups):
            yield from self.decode(self.read_row_group(g))


_pool = threading.local()


def _take_buffer(shape: tuple[int, ...]) -> np.ndarray:
    """A uint8 [ROW_GROUP_ROWS, *shape] buffer from this thread's pool (or a new one)."""
    free = _pool.__dict__.setdefault("free", {}).setdefault(tuple(shape), [])
    return free.pop() if free else np.empty((ROW_GROUP_ROWS, *shape), np.uint8)


def _give_back(buffer: np.ndarray) -> None:
    free = _pool.__dict__.setdefault("free", {}).setdefault(buffer.shape[1:], [])
    if len(free) < 4:  # a few writers open at once at most; more would only hold memory
        free.append(buffer)


def _binary_column(rows: np.ndarray, width: int) -> pa.FixedSizeBinaryArray:
    """uint8 [n, ...] (C-contiguous) as a fixed_size_binary column, without copying."""
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), len(rows),
                                                [None, pa.py_buffer(rows)])


def decode_rolls(column: pa.ChunkedArray | pa.Array, shape: tuple[int, ...]) -> np.ndarray:
    """A fixed_size_binary column as uint8 [rows, *shape], without copying when possible."""
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    arrays = []
    for chunk in chunks:
        if chunk.null_count:
            raise ShardError("a roll column holds nulls")
        buf = chunk.buffers()[1]
        width = int(np.prod(shape))
        flat = np.frombuffer(buf, np.uint8, count=len(chunk) * width,
                             offset=chunk.offset * width)
        arrays.append(flat.reshape(len(chunk), *shape))
    if len(arrays) == 1:
        return arrays[0]
    return np.concatenate(arrays) if arrays else np.zeros((0, *shape), np.uint8)


def write_rejects(path: Path, rejects: Iterable[dict[str, str]]) -> int:
    """Write the rejects table atomically; returns its row count."""
    rows = sorted(rejects, key=lambda r: (r["file"], r["stage"], r["reason"]))
    table = pa.Table.from_pylist(rows, schema=REJECTS_SCHEMA)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression=COMPRESSION, compression_level=COMPRESSION_LEVEL)
    atomic_write_bytes(path, sink.getvalue().to_pybytes())
    return len(rows)
