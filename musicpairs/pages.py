"""Rolls straight from their Parquet pages: the shard format's fast read path.

A roll column written by ShardWriter is required (no levels), PLAIN (no dictionary), one
row per data page: each page, decompressed, is the C-order bytes of one roll. A reader
keeps a row group's pages compressed and decompresses each roll straight into the memory
it is wanted in (a batch being filled), the one copy there is. Pages of several rows
(files written by other tools or older musicpairs) are decompressed once into a scratch
buffer and copied from there; any other layout is read through Arrow
(``shards.decode_rolls``).
"""

from __future__ import annotations

import bisect
from typing import Any

import cramjam
import numpy as np

from musicpairs.shards import ShardError

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
    if decompress is None or chunk.has_dictionary_page or not rg.num_rows or \
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
                    rows + size // width > n or not 0 <= packed <= len(raw) - reader.pos:
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
    except (IndexError, KeyError, TypeError, ValueError):  # not a header as ShardWriter's
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
        if packed < 0 or body + packed > size or rows + per > n:
            raise ValueError("a page runs past its column chunk")
        offsets(body)
        lengths(packed)
        firsts(rows)
        counts(per)
        rows += per
        pos = body + packed
    return pos, rows
