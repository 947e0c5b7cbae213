"""PairStream: the shards of one split as a streaming PyTorch ``IterableDataset``.

Every epoch, every rank sees the same global order of the split's samples: row groups in
an order drawn from ``seed`` and the epoch, each row group's rows in file order. The order
is cut into one contiguous run per rank (equal lengths: the remainder is padded by
repeating the first samples of the order, or dropped), each rank's run into one
contiguous run per DataLoader worker, and each worker's run is shuffled within blocks of
``shuffle_buffer`` samples (drawn from seed, epoch, rank and worker). A worker therefore
reads only the row groups its run touches, and holds at most one block of them, still
compressed: each roll is decompressed once, straight into the tensor it is yielded in.

Resuming: :class:`PairLoader` (a DataLoader wrapper) counts, per worker, the samples it
has handed out; its ``state_dict()`` is that count with the epoch and the settings, and a
fresh loader given it skips exactly those samples (without reading them), also with
several workers. A bare PairStream iterated in the main process keeps the same count
itself.
"""

from __future__ import annotations

import json
import os
import posixpath
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from musicpairs.errors import MusicpairsError
from musicpairs.pages import DecodedRolls, read_roll_chunk
from musicpairs.shards import ShardMeta, ShardReader, decode_rolls

REMAINDERS = ("pad", "drop")
OPEN_SHARDS = 64  # per worker; each holds a file handle and its parsed footer


class LoaderError(MusicpairsError):
    """A dataset cannot be streamed as asked (no manifest, no such split, bad state)."""


def _filesystem(root: str, storage_options: dict | None):
    """(fsspec filesystem, path within it, pyarrow filesystem or None for local paths)."""
    import fsspec

    fs, path = fsspec.core.url_to_fs(root, **(storage_options or {}))
    if "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)):
        return fs, path, None
    from pyarrow.fs import FSSpecHandler, PyFileSystem

    return fs, path, PyFileSystem(FSSpecHandler(fs))


def _distributed() -> tuple[int, int]:
    """(rank, world size) from torch.distributed when it is running, else the environment."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


class PairStream(IterableDataset):
    """Stream the pairs of one split of a musicpairs dataset.

    Yields dicts ``{"source": uint8 tensor [Cs, 128, W], "target": uint8 tensor
    [Ct, 128, W], "pair_id": str}``. Works with ``DataLoader(num_workers=k)``; to resume
    mid-epoch with workers, use :class:`PairLoader`.

    Args:
        root: The dataset folder (holding ``manifest.json``): a path or an fsspec URL.
        split: ``train``, ``valid`` or ``test``.
        shuffle: Shuffle row groups and, within blocks, samples (False: file order).
        seed: The same seed gives the same order on every rank and in every run.
        transpose: Shift source and target together by a random whole number of
            semitones in ``-transpose..transpose`` per sample. Nothing wraps around or
            falls off the pitch range: the shift is drawn from the part of that range
            that keeps every note of the sample within 0-127. Channels named ``drums``
            are never shifted.
        rank, world_size: This process's place among data-parallel ranks; by default
            from ``torch.distributed`` when it is initialized, else the ``RANK`` and
            ``WORLD_SIZE`` environment variables, else 0 and 1.
        remainder: When the split does not divide evenly among ranks: ``"pad"`` repeats
            the first samples of the epoch's order so every rank gets
            ceil(N / world_size); ``"drop"`` leaves the last N mod world_size out.
        shuffle_buffer: Samples per shuffle block (memory: that many compressed pairs).
        batch_size: Yield batches instead of samples: the same samples in the same order,
            ``batch_size`` at a time (the last of each worker may be smaller), as dicts
            of stacked tensors [B, C, 128, W] and a list of pair ids. Use it with
            ``DataLoader(batch_size=None)`` (:class:`PairLoader` does): rolls are
            decompressed straight into the batch, with no per-sample collation.
        storage_options: Passed to fsspec for URLs.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        *,
        shuffle: bool = True,
        seed: int = 0,
        transpose: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        remainder: str = "pad",
        shuffle_buffer: int = 1024,
        batch_size: int | None = None,
        storage_options: dict | None = None,
    ):
        super().__init__()
        if remainder not in REMAINDERS:
            raise ValueError(f"remainder must be one of {REMAINDERS}, not {remainder!r}")
        if transpose < 0 or shuffle_buffer < 1:
            raise ValueError("transpose must be >= 0 and shuffle_buffer >= 1")
        env_rank, env_world = _distributed()
        self.rank = env_rank if rank is None else rank
        self.world_size = env_world if world_size is None else world_size
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} is not in 0..{self.world_size - 1}")
        self.root, self.split = str(root), split
        self.shuffle, self.seed, self.transpose = shuffle, seed, transpose
        self.remainder, self.shuffle_buffer = remainder, shuffle_buffer
        if batch_size is not None and batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.batch_size = batch_size
        self.storage_options = storage_options
        self.epoch = 0
        self.tag_positions = False  # PairLoader sets this: samples carry (worker, position)
        self._skip: dict[int, int] = {}
        self._consumed: dict[int, int] = {}

        fs, base, pa_fs = _filesystem(self.root, storage_options)
        manifest_path = posixpath.join(base, "manifest.json")
        try:
            manifest = json.loads(fs.cat_file(manifest_path))
        except FileNotFoundError as e:
            raise LoaderError(f"{self.root}: no manifest.json (not a finished musicpairs "
                              "dataset)") from e
        self.meta = ShardMeta.from_json(json.dumps(manifest["meta"]))
        self.shards = sorted(posixpath.join(base, s["path"]) for s in manifest["shards"]
                             if s["split"] == split)
        if not self.shards:
            raise LoaderError(f"{self.root}: no shards in split {split!r}")
        # Row groups of every shard, in file order: (shard index, row group, rows).
        groups = []
        for i, path in enumerate(self.shards):
            reader = ShardReader(path, filesystem=pa_fs)
            groups += [(i, g, reader.file.metadata.row_group(g).num_rows)
                       for g in range(reader.num_row_groups)]
        self._groups = np.array(groups, np.int64).reshape(-1, 3)
        self._group_start = np.concatenate(([0], np.cumsum(self._groups[:, 2])))
        self.num_samples = int(self._group_start[-1])
        n, w = self.num_samples, self.world_size
        self.samples_per_rank = -(-n // w) if remainder == "pad" else n // w
        drum = [c == "drums" for c in self.meta.source_channels]
        self._source_pitched = np.repeat(~np.array(drum, bool), 2)
        drum = [c == "drums" for c in self.meta.target_channels]
        self._target_pitched = np.repeat(~np.array(drum, bool), 2)
        self._fs, self._pa_fs = fs, pa_fs

    # ----------------------------------------------------------------------------------
    # The order

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose order to stream (call before iterating, every epoch)."""
        if epoch != self.epoch:
            self._skip, self._consumed = {}, {}
        self.epoch = epoch

    def __len__(self) -> int:
        """Samples this rank yields per epoch (over all its DataLoader workers)."""
        return self.samples_per_rank

    def global_order(self, epoch: int | None = None) -> np.ndarray:
        """int64 [N]: the epoch's order of sample indices (file order), before ranks."""
        epoch = self.epoch if epoch is None else epoch
        n_groups = len(self._groups)
        groups = (np.random.default_rng([self.seed, epoch]).permutation(n_groups)
                  if self.shuffle else np.arange(n_groups))
        starts, sizes = self._group_start[groups], self._groups[groups, 2]
        offsets = np.repeat(starts - np.concatenate(([0], np.cumsum(sizes)[:-1])), sizes)
        return np.arange(self.num_samples, dtype=np.int64) + offsets

    def rank_order(self, epoch: int | None = None) -> np.ndarray:
        """int64 [samples_per_rank]: this rank's contiguous run of the global order."""
        order = self.global_order(epoch)
        total = self.samples_per_rank * self.world_size
        if total > len(order):  # pad by repeating the start of the order
            order = np.concatenate([order] * (-(-total // len(order))))
        return order[self.rank * self.samples_per_rank : (self.rank + 1) *
                     self.samples_per_rank]

    def worker_order(self, worker: int, num_workers: int,
                     epoch: int | None = None) -> np.ndarray:
        """int64: what one DataLoader worker of this rank yields, in order."""
        epoch = self.epoch if epoch is None else epoch
        order = self.rank_order(epoch)
        base, extra = divmod(len(order), num_workers)
        lo = worker * base + min(worker, extra)
        mine = order[lo : lo + base + (worker < extra)].copy()
        if self.shuffle:
            rng = np.random.default_rng([self.seed, epoch, self.rank, worker, num_workers])
            for b in range(0, len(mine), self.shuffle_buffer):
                block = mine[b : b + self.shuffle_buffer]
                block[:] = rng.permutation(block)
        return mine

    # ----------------------------------------------------------------------------------
    # Reading

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info else (0, 1)
        order = self.worker_order(worker, num_workers)
        skip = self._skip.get(worker, 0)
        shifts = self._shifts(worker, num_workers, len(order))
        group_of = np.searchsorted(self._group_start, order, side="right") - 1
        row_of = (order - self._group_start[group_of]).tolist()
        group_of = group_of.tolist()
        opened: dict[str, Any] = {}
        cache: OrderedDict[int, tuple] = OrderedDict()  # row group -> ids, compressed rolls
        keep = self.shuffle_buffer // max(int(self._groups[:, 2].max()), 1) + 2
        step = self.batch_size or 1
        try:
            for first in range(skip, len(order), step):
                last = min(first + step, len(order))
                needed = dict.fromkeys(group_of[first:last])
                for g in needed:
                    if g not in cache:
                        cache[g] = self._read_group(g, opened)
                # Forget the oldest row groups this step does not use.
                for g in [g for g in cache if g not in needed][: max(len(cache) - keep, 0)]:
                    del cache[g]
                if self.batch_size:
                    sample = self._batch(cache, group_of[first:last], row_of[first:last])
                    if self.transpose:
                        for i in range(last - first):
                            one = {"source": sample["source"][i],
                                   "target": sample["target"][i]}
                            self._transpose(one, shifts[first + i])
                            sample["source"][i], sample["target"][i] = one["source"], \
                                one["target"]
                else:
                    pair_ids, source, target = cache[group_of[first]]
                    row = row_of[first]
                    sample = {"source": self._roll(source, row, self.meta.source_shape),
                              "target": self._roll(target, row, self.meta.target_shape),
                              "pair_id": pair_ids[row]}
                    if self.transpose:
                        self._transpose(sample, shifts[first])
                if self.tag_positions:
                    where = torch.arange(first, last)
                    sample["stream_position"] = (torch.stack([torch.full_like(where, worker),
                                                              where], 1)
                                                 if self.batch_size else
                                                 torch.tensor([worker, first]))
                if info is None:
                    self._consumed[0] = last
                yield sample
        finally:
            for handle, _ in opened.values():
                handle.close()
        if info is None:  # a whole epoch: nothing left to skip
            self._skip, self._consumed = {}, {}

    def _batch(self, cache, groups: list[int], rows: list[int]) -> dict[str, Any]:
        """Rows decompressed straight into one batch: each roll written once."""
        n = len(rows)
        shared = get_worker_info() is not None
        source_t = _empty((n, *self.meta.source_shape), shared)
        target_t = _empty((n, *self.meta.target_shape), shared)
        source, target = source_t.numpy(), target_t.numpy()
        pair_ids = []
        for i, (g, r) in enumerate(zip(groups, rows, strict=True)):
            ids, src, tgt = cache[g]
            src.read_into(r, source[i])
            tgt.read_into(r, target[i])
            pair_ids.append(ids[r])
        return {"source": source_t, "target": target_t, "pair_id": pair_ids}

    @staticmethod
    def _roll(rolls, row: int, shape: tuple[int, ...]) -> torch.Tensor:
        out = torch.empty(shape, dtype=torch.uint8)
        rolls.read_into(row, out.numpy())
        return out

    def _read_group(self, g: int, opened: dict[str, Any]) -> tuple:
        """(pair ids, source rolls, target rolls) of row group g, the rolls still
        compressed (shards stay open, a few at a time: a shuffled order moves between
        shards at every row group)."""
        path, group = self.shards[int(self._groups[g, 0])], int(self._groups[g, 1])
        if path not in opened:
            if len(opened) >= OPEN_SHARDS:
                oldest = next(iter(opened))
                opened.pop(oldest)[0].close()
            handle = (Path(path).open("rb") if self._pa_fs is None else
                      self._fs.open(path, "rb"))
            opened[path] = (handle, ShardReader(handle))
        handle, reader = opened[path]
        meta = reader.file.metadata
        rolls = [read_roll_chunk(handle, meta, group, name, shape, path)
                 for name, shape in (("source", self.meta.source_shape),
                                     ("target", self.meta.target_shape))]
        columns = ["pair_id"] + [c for c, r in zip(("source", "target"), rolls, strict=True)
                                 if r is None]
        table = reader.read_row_group(group, columns=columns)
        for i, name in enumerate(("source", "target")):  # not laid out for the fast path
            if rolls[i] is None:
                rolls[i] = DecodedRolls(decode_rolls(table.column(name),
                                                     getattr(self.meta, f"{name}_shape")))
        return table.column("pair_id").to_pylist(), rolls[0], rolls[1]

    def _shifts(self, worker: int, num_workers: int, n: int) -> np.ndarray:
        """Uniform draws in [0, 1) per position, mapped to a shift once the sample's
        pitch range is known (so a resumed stream shifts each sample the same way)."""
        if not self.transpose:
            return np.zeros(0)
        rng = np.random.default_rng([self.seed, self.epoch, self.rank, worker, num_workers, 1])
        return rng.random(n)

    def _transpose(self, sample: dict[str, Any], u: float) -> None:
        src, tgt = sample["source"], sample["target"]
        used = (src[self._source_pitched].any(dim=0).any(dim=1) |
                tgt[self._target_pitched].any(dim=0).any(dim=1))
        pitches = torch.nonzero(used).flatten()
        if not len(pitches):
            return
        low = max(-self.transpose, -int(pitches[0]))
        high = min(self.transpose, 127 - int(pitches[-1]))
        k = low + min(int(u * (high - low + 1)), high - low)
        if k:
            sample["source"] = shift_pitches(src, k, self._source_pitched)
            sample["target"] = shift_pitches(tgt, k, self._target_pitched)

    # ----------------------------------------------------------------------------------
    # Resuming (in the main process; with workers, PairLoader keeps the count)

    def state_dict(self) -> dict[str, Any]:
        """Where this stream is: epoch, settings, and samples handed out per worker."""
        return {"epoch": self.epoch, "seed": self.seed, "shuffle": self.shuffle,
                "rank": self.rank, "world_size": self.world_size, "num_workers": 0,
                "num_samples": self.num_samples, "remainder": self.remainder,
                "shuffle_buffer": self.shuffle_buffer,
                "consumed": {str(k): v for k, v in self._consumed.items()}}

    def load_state_dict(self, state: dict[str, Any], *, num_workers: int = 0) -> None:
        """Continue where ``state`` stopped: the next iteration skips what was handed out.

        Raises:
            LoaderError: The state belongs to a stream with other settings.
        """
        mine = self.state_dict()
        for key in ("seed", "shuffle", "rank", "world_size", "num_samples", "remainder",
                    "shuffle_buffer"):
            if state.get(key) != mine[key]:
                raise LoaderError(f"cannot resume: the saved stream has {key}="
                                  f"{state.get(key)!r}, this one {mine[key]!r}")
        if state.get("num_workers", 0) != num_workers:
            raise LoaderError(f"cannot resume: the saved stream ran with "
                              f"{state.get('num_workers', 0)} workers, this one with "
                              f"{num_workers}")
        self.epoch = int(state["epoch"])
        self._skip = {int(k): int(v) for k, v in state["consumed"].items()}
        self._consumed = dict(self._skip)


def _empty(shape: tuple[int, ...], shared: bool) -> torch.Tensor:
    """A new uint8 tensor; in a DataLoader worker, in shared memory from the start (as
    torch's default_collate does), so handing it to the main process copies nothing."""
    if shared:
        numel = int(np.prod(shape))
        storage = torch.UntypedStorage._new_shared(numel)
        return torch.empty(0, dtype=torch.uint8).set_(storage).view(shape)
    return torch.empty(shape, dtype=torch.uint8)


def shift_pitches(rolls: torch.Tensor, k: int, pitched: np.ndarray | None = None
                  ) -> torch.Tensor:
    """Rolls (..., C, 128, W) with their pitched channels moved up k semitones (down when
    negative); nothing wraps: what moves past either end is dropped, silence fills in.

    Args:
        pitched: bool [C], the channels that move (drums do not); None: all of them.
    """
    if k == 0:
        return rolls
    rows = (slice(None) if pitched is None
            else torch.from_numpy(np.flatnonzero(pitched)).to(rolls.device))
    part = rolls[..., rows, :, :]
    moved = torch.zeros_like(part)
    if k > 0:
        moved[..., k:, :] = part[..., :-k, :]
    else:
        moved[..., :k, :] = part[..., -k:, :]
    if pitched is None:
        return moved
    out = rolls.clone()
    out[..., rows, :, :] = moved
    return out


class PairLoader:
    """A DataLoader over a PairStream that can stop and resume mid-epoch exactly.

    Batches are dicts of stacked tensors (``source`` uint8 [B, Cs, 128, W], ``target``)
    and ``pair_id`` (a list). ``state_dict()`` records, per worker, how many samples the
    batches handed out so far held; ``load_state_dict()`` on a fresh loader (same
    dataset, settings and ``num_workers``) makes its next pass yield exactly the rest of
    that epoch. Workers are started afresh each pass (not persistent) so they see it.

    Args:
        stream: The PairStream.
        batch_size: Samples per batch.
        num_workers: DataLoader worker processes.
        **kwargs: More DataLoader options (``pin_memory``, ``prefetch_factor``...).
    """

    def __init__(self, stream: PairStream, batch_size: int, *, num_workers: int = 0,
                 **kwargs):
        if kwargs.get("persistent_workers"):
            raise ValueError("PairLoader starts its workers afresh each pass "
                             "(persistent_workers would not see a resumed state)")
        self.stream = stream
        self.stream.tag_positions = True
        self.stream.batch_size = batch_size  # batches are made by the stream
        self.num_workers = num_workers
        self.loader = DataLoader(stream, batch_size=None, num_workers=num_workers, **kwargs)
        self._consumed: dict[int, int] = {}

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.stream.epoch:
            self._consumed = {}
        self.stream.set_epoch(epoch)

    def __len__(self) -> int:
        """Batches per epoch on this rank (each worker's last batch may be short)."""
        return sum(self._batches_per_worker())

    def _batches_per_worker(self) -> list[int]:
        n, k = self.stream.samples_per_rank, max(self.num_workers, 1)
        size = self.stream.batch_size or 1
        return [-(-(n // k + (w < n % k)) // size) for w in range(k)]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        # The DataLoader takes one batch from each worker in turn (skipping workers that
        # are done), starting at worker 0 each pass. A resumed pass must go on with the
        # worker that was next, so batches are handed out in the uninterrupted run's
        # turn order: the worker with the fewest batches handed out (then the lowest id),
        # holding at most one batch per worker back until its turn.
        size = self.stream.batch_size or 1
        total = self._batches_per_worker()
        taken = [-(-self._consumed.get(w, 0) // size) for w in range(len(total))]
        held: dict[int, list[dict[str, Any]]] = {w: [] for w in range(len(total))}
        for batch in self.loader:
            where = batch.pop("stream_position")
            held[int(where[0, 0])].append((batch, int(where[:, 1].max()) + 1))
            while True:
                turn = [w for w in range(len(total)) if taken[w] < total[w]]
                if not turn:
                    break
                worker = min(turn, key=lambda w: (taken[w], w))
                if not held[worker]:
                    break
                ready, last = held[worker].pop(0)
                taken[worker] += 1
                self._consumed[worker] = max(self._consumed.get(worker, 0), last)
                yield ready
        self._consumed = {}
        self.stream._skip = {}

    def state_dict(self) -> dict[str, Any]:
        state = self.stream.state_dict()
        state["num_workers"] = self.num_workers
        state["consumed"] = {str(k): v for k, v in sorted(self._consumed.items())}
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stream.load_state_dict(state, num_workers=self.num_workers)
        self._consumed = {int(k): int(v) for k, v in state["consumed"].items()}
