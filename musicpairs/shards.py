"""The shard format, described once: Parquet files of pair windows, and their reader.

A dataset folder holds ``manifest.json``, ``<split>/part-NNNNN.parquet`` and
``rejects.parquet``. Rolls are ``fixed_size_binary`` columns holding the C-order bytes of
uint8 arrays (``fixed_shape_tensor`` decodes ~20x slower through Parquet); nothing is
pickled, so pyarrow, pandas, polars, duckdb or HF datasets can open a shard. Each file's
schema metadata key ``musicpairs`` holds JSON: ``schema_version``, ``task``,
``steps_per_beat``, ``source_shape``, ``target_shape``, ``dtype``, ``source_channels``,
``target_channels``.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import os
import threading
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cramjam
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


# --------------------------------------------------------------------------------------
# Rolls straight from their pages
#
# A roll column written by ShardWriter is required (no levels), PLAIN (no dictionary),
# one row per data page: each page, decompressed, is the C-order bytes of one roll. A
# reader keeps a row group's pages compressed and decompresses each roll straight into
# the memory it is wanted in (a batch being filled), the one copy there is. Pages of
# several rows (files written by other tools or older musicpairs) are decompressed once
# into a scratch buffer and copied from there; any other layout is read through Arrow.

_DATA_PAGE, _PLAIN = 0, 0


def _copy_into(body, out: np.ndarray) -> int:
    flat = out.reshape(-1)
    if len(body) == flat.size:
        flat[:] = np.frombuffer(body, np.uint8)
    return len(body)


# Each writes a page's decompressed bytes into a C-contiguous array and returns how many.
# pyarrow names Parquet's LZ4_RAW "LZ4"; Hadoop-framed LZ4 pages are told apart by their
# frame header (read_roll_chunk) and left to Arrow.
_LZ4_INTO = cramjam.lz4.decompress_block_into
_FAST_CODECS = {"LZ4": _LZ4_INTO, "LZ4_RAW": _LZ4_INTO,
                "ZSTD": cramjam.zstd.decompress_into,
                "SNAPPY": cramjam.snappy.decompress_raw_into, "UNCOMPRESSED": _copy_into}
_DECOMPRESS_ERRORS = (cramjam.DecompressionError, ValueError)


class _Compact:
    """Just enough of Thrift's compact protocol to read a Parquet PageHeader."""

    def __init__(self, data: memoryview, pos: int = 0):
        self.data, self.pos = data, pos

    def varint(self) -> int:
        out = shift = 0
        while True:
            b = self.data[self.pos]
            self.pos += 1
            out |= (b & 0x7F) << shift
            if not b & 0x80:
                return out
            shift += 7

    def zigzag(self) -> int:
        n = self.varint()
        return (n >> 1) ^ -(n & 1)

    def struct(self, spans: dict[int, tuple[int, int]] | None = None) -> dict[int, Any]:
        """A struct's fields: ints and nested structs by field id; others skipped.
        ``spans`` gets where each field's value lies in the data."""
        fields: dict[int, Any] = {}
        last = 0
        while True:
            head = self.data[self.pos]
            self.pos += 1
            kind = head & 0x0F
            if kind == 0:
                return fields
            delta = head >> 4
            last = last + delta if delta else self.zigzag()
            start = self.pos
            fields[last] = self.value(kind)
            if spans is not None:
                spans[last] = (start, self.pos)

    def value(self, kind: int) -> Any:
        if kind in (1, 2):
            return kind == 1
        if kind == 3:
            self.pos += 1
            return self.data[self.pos - 1]
        if kind in (4, 5, 6):
            return self.zigzag()
        if kind == 7:
            self.pos += 8
            return None
        if kind == 8:
            n = self.varint()
            self.pos += n
            return None
        if kind in (9, 10):
            head = self.data[self.pos]
            self.pos += 1
            n = head >> 4 if head >> 4 != 15 else self.varint()
            for _ in range(n):
                self.value(head & 0x0F)
            return None
        if kind == 12:
            return self.struct()
        raise ValueError(f"thrift type {kind} in a page header")


class RollChunk:
    """The rolls of one row group's roll column, kept compressed as read from its pages.

    ``read_into(row, out)`` decompresses one roll into ``out`` (a C-contiguous uint8
    array of the roll's shape, e.g. a slot of a batch); ``to_numpy()`` decodes them all.
    """

    def __init__(self, raw: memoryview, pages: list[list[int]], decompress,
                 shape: tuple[int, ...], where: str):
        self._raw, self._decompress, self.shape, self._where = raw, decompress, shape, where
        self._width = int(np.prod(shape))
        # Per page: body offset in raw, body length, first row, rows.
        self._offset, self._packed, self._first, self._rows = pages
        self._single = len(self._rows) == self._first[-1] + self._rows[-1]
        self._scratch: tuple[int, np.ndarray] | None = None  # the last multi-row page

    def __len__(self) -> int:
        return self._first[-1] + self._rows[-1]

    def read_into(self, row: int, out: np.ndarray) -> None:
        if self._single:  # the page is the row: the hot path, kept flat
            start = self._offset[row]
            try:
                written = self._decompress(self._raw[start : start + self._packed[row]], out)
            except _DECOMPRESS_ERRORS as e:
                raise self._error(row, f"does not decompress ({e})") from e
            if written != self._width:
                raise self._error(row, f"holds {written} bytes, not {self._width}")
            return
        page = bisect.bisect_right(self._first, row) - 1
        if self._scratch is None or self._scratch[0] != page:
            scratch = np.empty(self._rows[page] * self._width, np.uint8)
            self._page_into(page, scratch)
            self._scratch = (page, scratch)
        at = (row - self._first[page]) * self._width
        out.reshape(-1)[:] = self._scratch[1][at : at + self._width]

    def to_numpy(self) -> np.ndarray:
        out = np.empty((len(self), *self.shape), np.uint8)
        flat = out.reshape(-1)
        for page, first in enumerate(self._first):
            at = first * self._width
            self._page_into(page, flat[at : at + self._rows[page] * self._width])
        return out

    def _page_into(self, page: int, out: np.ndarray) -> None:
        body = self._raw[self._offset[page] : self._offset[page] + self._packed[page]]
        try:
            written = self._decompress(body, out)
        except _DECOMPRESS_ERRORS as e:
            raise self._error(page, f"does not decompress ({e})") from e
        if written != out.size:
            raise self._error(page, f"holds {written} bytes, not {out.size}")

    def _error(self, page: int, reason: str) -> ShardError:
        return ShardError(f"{self._where}: page {page} {reason}")


class DecodedRolls:
    """Rolls already decoded (read through Arrow), behind RollChunk's interface."""

    def __init__(self, rolls: np.ndarray):
        self.rolls = rolls

    def __len__(self) -> int:
        return len(self.rolls)

    def read_into(self, row: int, out: np.ndarray) -> None:
        out[...] = self.rolls[row]

    def to_numpy(self) -> np.ndarray:
        return self.rolls


def read_roll_chunk(file, metadata, row_group: int, column: str,
                    shape: tuple[int, ...], where: str = "") -> RollChunk | None:
    """A roll column of one row group, its pages read but not yet decompressed.

    Args:
        file: The open shard (binary, seekable).
        metadata: Its ``pq.FileMetaData``.
        where: Names the file in errors.

    Returns:
        The chunk, or None when the column is not laid out as ShardWriter writes it (the
        caller then reads it through Arrow).
    """
    rg = metadata.row_group(row_group)
    index = metadata.schema.names.index(column)
    chunk = rg.column(index)
    decompress = _FAST_CODECS.get(str(chunk.compression).upper())
    if decompress is None or chunk.has_dictionary_page or \
            metadata.schema.column(index).max_definition_level != 0:
        return None
    width = int(np.prod(shape))
    n = rg.num_rows
    file.seek(chunk.data_page_offset)
    raw = file.read(chunk.total_compressed_size)
    pages: list[list[int]] = [[], [], [], []]  # body offsets, body lengths, first rows, rows
    rows = pos = 0
    try:
        while rows < n:
            reader, spans = _Compact(raw, pos), {}
            header = reader.struct(spans)
            page_type, size, packed = header.get(1), header.get(2), header.get(3)
            data_header = header.get(5) or {}
            if page_type != _DATA_PAGE or data_header.get(2, _PLAIN) != _PLAIN or \
                    not size or size % width or data_header.get(1) != size // width or \
                    rows + size // width > n or reader.pos + packed > len(raw):
                return None
            if decompress is _LZ4_INTO and packed >= 8 and \
                    int.from_bytes(raw[reader.pos : reader.pos + 4], "big") == size and \
                    int.from_bytes(raw[reader.pos + 4 : reader.pos + 8], "big") == packed - 8:
                return None  # a Hadoop LZ4 frame
            for column_list, value in zip(pages, (reader.pos, packed, rows, size // width),
                                          strict=True):
                column_list.append(value)
            start, end = spans[3]
            pos, rows = _like_pages(raw, reader.pos + packed, rows + size // width, n,
                                    size // width, raw[pos:start], raw[end : reader.pos], pages)
    except (IndexError, ValueError):
        return None
    return RollChunk(memoryview(raw), pages, decompress, tuple(shape),
                     f"{where or 'shard'}: row group {row_group}, column {column}")


def _like_pages(raw: bytes, pos: int, rows: int, n: int, per: int, before: bytes,
                after: bytes, pages: list[list[int]]) -> tuple[int, int]:
    """Pages whose headers are the bytes of the one just parsed but for the compressed
    size (a roll column's are): read in a tight loop, to the first page that differs.
    Returns where that page starts and the rows read so far."""
    offsets, lengths, firsts, counts = (x.append for x in pages)
    starts, skip_before, skip_after, size = raw.startswith, len(before), len(after), len(raw)
    while rows < n and starts(before, pos):
        at = pos + skip_before
        packed = shift = 0
        while True:  # the zigzag varint of the compressed size
            b = raw[at]
            at += 1
            packed |= (b & 0x7F) << shift
            if b < 0x80:
                break
            shift += 7
        if not starts(after, at):
            break
        packed = (packed >> 1) ^ -(packed & 1)
        body = at + skip_after
        if body + packed > size or rows + per > n:
            raise ValueError("a page runs past its column chunk")
        offsets(body)
        lengths(packed)
        firsts(rows)
        counts(per)
        rows += per
        pos = body + packed
    return pos, rows
