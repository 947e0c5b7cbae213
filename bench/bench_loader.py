"""PairStream against the same bytes read from a numpy memmap and from Parquet
``fixed_shape_tensor`` columns.

    python bench/bench_loader.py DATASET [--rows N] [--batch-size 64] [--rounds 3]

DATASET is a musicpairs build with [2, 128, 256] pairs (e.g. ``musicpairs build --src
pop909 --path PATH --task melody2accomp --out DATASET``). Side by side, in rounds that
alternate, each route on one core in one thread, producing the same thing: batches of
``--batch-size`` source and target uint8 tensors, rows in file order:

* musicpairs: ``PairStream(batch_size=B, shuffle=False)`` over the shards (also shuffled);
* (a) memmap: the same rows in two ``.npy`` files opened with ``np.load(mmap_mode="r")``,
  each batch copied row by row into a new array, as a memmap Dataset does;
* (b) fixed_shape_tensor: the same rows written to Parquet as ``fixed_shape_tensor``
  columns (same compression as the shards), each row group read and converted with
  ``to_numpy_ndarray()``, batches copied the same way.

Every file is read into the page cache before each pass, and each route makes one untimed
pass first (the process's allocators warm up alike). Targets: musicpairs >= 40,000
samples/s per worker and >= 50 % of (a).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def warm(paths):
    for p in paths:
        with open(p, "rb") as fh:  # noqa: PTH123
            while fh.read(1 << 24):
                pass


def batches_from(rows_source, rows_target, n, batch):
    import torch

    for first in range(0, n, batch):
        last = min(first + batch, n)
        s = np.empty((last - first, *rows_source.shape[1:]), np.uint8)
        t = np.empty((last - first, *rows_target.shape[1:]), np.uint8)
        for i in range(first, last):
            s[i - first] = rows_source[i]
            t[i - first] = rows_target[i]
        yield torch.from_numpy(s), torch.from_numpy(t)


def route_memmap(tmp, n, batch):
    src = np.load(tmp / "source.npy", mmap_mode="r")
    tgt = np.load(tmp / "target.npy", mmap_mode="r")
    return sum(len(s) for s, _ in batches_from(src, tgt, n, batch))


def route_tensor(tmp, n, batch):
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(tmp / "tensor.parquet")
    done = 0
    for g in range(pf.num_row_groups):
        table = pf.read_row_group(g, use_threads=False)
        src = table.column("source").combine_chunks().to_numpy_ndarray()
        tgt = table.column("target").combine_chunks().to_numpy_ndarray()
        done += sum(len(s) for s, _ in batches_from(src, tgt, len(src), batch))
    return done


def route_pairstream(root, split, n, batch, shuffle):
    from musicpairs.loader import PairStream

    stream = PairStream(root, split, shuffle=shuffle, batch_size=batch)
    done = 0
    for b in stream:
        done += len(b["pair_id"])
        if done >= n:
            break
    return done


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", type=Path, help="a musicpairs dataset with [2, 128, 256] pairs")
    ap.add_argument("--split", default="train")
    ap.add_argument("--rows", type=int, default=4096, help="rows per pass")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch

    from musicpairs.loader import PairStream
    from musicpairs.shards import ROLL_COMPRESSION

    torch.set_num_threads(1)
    pa.set_cpu_count(1)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[-1]})
    stream = PairStream(args.root, args.split, shuffle=False, batch_size=256)
    shape = stream.meta.source_shape
    n = min(args.rows, stream.num_samples)
    tmp = Path(tempfile.mkdtemp(prefix="musicpairs-loader-bench-"))
    try:
        src = np.lib.format.open_memmap(tmp / "source.npy", "w+", np.uint8, (n, *shape))
        tgt = np.lib.format.open_memmap(tmp / "target.npy", "w+", np.uint8,
                                        (n, *stream.meta.target_shape))
        done = 0
        for b in stream:
            k = min(len(b["pair_id"]), n - done)
            src[done : done + k] = b["source"][:k].numpy()
            tgt[done : done + k] = b["target"][:k].numpy()
            done += k
            if done == n:
                break
        src.flush()
        tgt.flush()
        tensor_type = pa.fixed_shape_tensor(pa.uint8(), shape)
        table = pa.table({
            "source": pa.FixedShapeTensorArray.from_numpy_ndarray(np.asarray(src)),
            "target": pa.FixedShapeTensorArray.from_numpy_ndarray(np.asarray(tgt)),
        })
        assert table.column("source").type == tensor_type
        pq.write_table(table, tmp / "tensor.parquet", row_group_size=128,
                       compression=ROLL_COMPRESSION, use_dictionary=False)
        del src, tgt, table
        shards = [Path(s) for s in stream.shards]
        routes = {
            "musicpairs PairStream (file order)":
                (lambda: route_pairstream(args.root, args.split, n, args.batch_size, False),
                 shards),
            "musicpairs PairStream (shuffled)":
                (lambda: route_pairstream(args.root, args.split, n, args.batch_size, True),
                 shards),
            "(a) numpy memmap": (lambda: route_memmap(tmp, n, args.batch_size),
                                 [tmp / "source.npy", tmp / "target.npy"]),
            "(b) pyarrow fixed_shape_tensor": (lambda: route_tensor(tmp, n, args.batch_size),
                                               [tmp / "tensor.parquet"]),
        }
        seconds = dict.fromkeys(routes, 0.0)
        samples = dict.fromkeys(routes, 0)
        for fn, files in routes.values():  # one untimed pass each: allocators warm up
            warm(files)
            fn()
        for r in range(args.rounds):
            names = list(routes) if r % 2 == 0 else list(routes)[::-1]
            for name in names:
                fn, files = routes[name]
                warm(files)
                t0 = time.perf_counter()
                samples[name] += fn()
                seconds[name] += time.perf_counter() - t0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rate = {k: samples[k] / seconds[k] for k in routes}
    memmap = rate["(a) numpy memmap"]
    print(f"{n} rows of source {list(shape)} + target, batches of {args.batch_size}, one core, "
          f"{args.rounds} rounds\n")
    print("| route | samples/s per worker | vs (a) memmap |")
    print("|---|---:|---:|")
    for k in routes:
        print(f"| {k} | {rate[k]:,.0f} | {100 * rate[k] / memmap:.0f} % |")


if __name__ == "__main__":
    main()
