"""Near-duplicate grouping: accuracy on real files, build cost, and a corpus at LMD scale.

    python bench/bench_dedup.py accuracy --lakh PATH/TO/lakh [--pop909 PATH/TO/pop909]
    python bench/bench_dedup.py build PATH/TO/lakh --rounds 3
    python bench/bench_dedup.py simulate --files 178000

``accuracy`` fingerprints every file and groups them as ``--dedup content`` does, then
scores the groups against ``duplicates.json`` (the ISMIR 2025 lists' groups): pairwise
recall (pairs of one true group given one song), true groups merged, true groups whose
files land in more than one split; the same lists read through ``--groups`` in both
published layouts; and, on POP909, how many of its songs content grouping would join.
``build`` times ``build --dedup md5`` against ``--dedup content`` on a Lakh folder, on
warm workers, interleaved, with the driver's peak traced (Python and numpy) memory.
``simulate`` writes fingerprint tables for N files (Lakh-like sizes; a fifth of them in
clusters of near-duplicates) and times the grouping alone, in its own process.
"""

from __future__ import annotations

import argparse
import collections
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from musicpairs.build import split_of
from musicpairs.errors import MidiReadError
from musicpairs.grouping import group_files
from musicpairs.grouplists import read_group_lists


def _fingerprints(files: list[Path], folder: Path,
                  ) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Fingerprint tables for these files, as the build writes them."""
    from musicpairs.datasets.base import MidiSource
    from musicpairs.songs import fingerprint_partition

    for start in range(0, len(files), 256):
        part = [(i, MidiSource(str(f))) for i, f in enumerate(files[start:start + 256], start)]
        fingerprint_partition(start // 256, part, str(folder), True)
    from musicpairs.grouping import read_fingerprints

    return read_fingerprints(folder, len(files))


def _score(truth: list[str], root: np.ndarray) -> dict:
    pairs = found = 0
    merged = collections.defaultdict(set)
    for g, r in zip(truth, root.tolist(), strict=True):
        merged[r].add(g)
    for g in set(truth):
        members = [r for t, r in zip(truth, root.tolist(), strict=True) if t == g]
        pairs += len(members) * (len(members) - 1) // 2
        found += sum(n * (n - 1) // 2 for n in collections.Counter(members).values())
    return {"recall": found / max(1, pairs),
            "groups merged": sum(len(s) - 1 for s in merged.values() if len(s) > 1),
            "songs": len(set(root.tolist()))}


def accuracy(args) -> None:
    lakh = Path(args.lakh)
    truth_doc = json.loads((lakh / "duplicates.json").read_text())
    group_of = {m: g for g, ms in truth_doc.items() for m in ms}
    files = sorted((lakh / "lmd_full").glob("*/*.mid"))
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        md5, counts, digest = _fingerprints(files, Path(tmp))
        seconds = time.perf_counter() - t0
        readable = counts > 0
        print(f"Lakh: {len(files)} files ({readable.sum()} with a fingerprint), "
              f"{len(truth_doc)} true groups; fingerprints {seconds:.1f} s")
        truth = [group_of[f.stem] for f in files]
        own = np.arange(len(files))
        print(f"{'threshold':>9} {'pair recall':>11} {'groups merged':>13} {'songs':>6} "
              f"{'groups split across splits':>26}")
        for threshold in args.thresholds:
            g = group_files(own, md5, counts, folder=tmp, mode="content", threshold=threshold,
                            digest=digest)
            s = _score(truth, g.root)
            ids = [files[r].stem for r in g.root.tolist()]
            splits = collections.defaultdict(set)
            for t, i in zip(truth, ids, strict=True):
                splits[t].add(split_of(i))
            spread = sum(len(v) > 1 for v in splits.values())
            print(f"{threshold:>9} {s['recall']:>11.3f} {s['groups merged']:>13} "
                  f"{s['songs']:>6} {spread:>26}")
        # The same ground truth through --groups, in both published layouts.
        first = {f"{ms[0][0]}__{ms[0]}": [f"{m[0]}__{m}" for m in ms[1:]]
                 for ms in truth_doc.values()}
        second = {g: {"survived_file": f"{ms[0][0]}__{ms[0]}",
                      "remove_file_list": [f"{m[0]}__{m}" for m in ms[1:]]}
                  for g, ms in truth_doc.items()}
        for name, doc in (("h__md5 lists", first), ("survived_file lists", second)):
            path = Path(tmp) / "list.json"
            path.write_text(json.dumps(doc))
            g = group_files(own, md5, counts, folder=None, mode="content",
                            lists=read_group_lists(path))
            s = _score(truth, g.root)
            print(f"--groups ({name}): recall {s['recall']:.3f}, groups merged "
                  f"{s['groups merged']}, songs {s['songs']}")
    if args.pop909:
        root = Path(args.pop909)
        files = sorted(root.glob("*/*.mid")) + sorted(root.glob("*/versions/*.mid"))
        songs = [f.relative_to(root).parts[0] for f in files]
        number = {s: i for i, s in enumerate(sorted(set(songs)))}
        corpus_song = np.array([number[s] for s in songs])
        with tempfile.TemporaryDirectory() as tmp:
            md5, counts, digest = _fingerprints(files, Path(tmp))
            g = group_files(corpus_song, md5, counts, folder=tmp, mode="content",
                            threshold=args.thresholds[0], digest=digest)
            joined = collections.defaultdict(set)
            for s, r in zip(songs, g.root.tolist(), strict=True):
                joined[r].add(s)
            together = sum(len(v) for v in joined.values() if len(v) > 1)
            c = group_files(corpus_song, md5, counts, folder=tmp, mode="content",
                            curated=True, digest=digest)
            pairs = sorted({tuple(sorted((songs[a], songs[b]))) for a, b, _ in c.copies})
        print(f"POP909: {len(number)} songs, {len(files)} files. Merging by content "
              f"(threshold {args.thresholds[0]}) would put {together} songs in groups of "
              f"several; as built (its songs kept) it reports {len(pairs)} pairs of songs "
              f"as copies: {', '.join('/'.join(p) for p in pairs)}")


def build_cost(args) -> None:
    """md5 against content builds on warm workers (started and warmed before the clock,
    as a long build's start-up is nothing against LMD-full), interleaved. The timed rounds
    run untraced; one more build of each, traced (Python and numpy allocations), gives the
    driver's peak memory, as tracing slows the driver's own work."""
    import tracemalloc

    from musicpairs.build import BuildConfig, build
    from musicpairs.cluster import local_cluster

    rows = collections.defaultdict(list)
    peak = {}
    with tempfile.TemporaryDirectory() as tmp, local_cluster(args.workers) as cluster:
        base = dict(src="lakh", path=args.path, task="melody2accomp",
                    scheduler=cluster.scheduler_address)
        build(BuildConfig(**base, out=f"{tmp}/warm", limit=8))
        for r in range(args.rounds + 1):
            for dedup in ("md5", "content"):
                traced = r == args.rounds
                if traced:
                    tracemalloc.start()
                t = time.perf_counter()
                s = build(BuildConfig(**base, out=f"{tmp}/{dedup}-{r}", dedup=dedup))
                seconds = time.perf_counter() - t
                if traced:
                    peak[dedup] = tracemalloc.get_traced_memory()[1] / 2**20
                    tracemalloc.stop()
                else:
                    rows[dedup].append({"seconds": seconds, "files": s["files"],
                                        "songs": s["songs"]})
    print(f"{args.workers} warm worker(s), {rows['md5'][0]['files']} files")
    print(f"{'--dedup':>8} {'files/s (rounds)':>40} {'driver peak MB':>15} {'songs':>6}")
    for dedup, runs in rows.items():
        rates = [x["files"] / x["seconds"] for x in runs]
        print(f"{dedup:>8} {np.median(rates):>8.1f} ({', '.join(f'{v:.1f}' for v in rates)})"
              f"{peak[dedup]:>15.0f} {runs[0]['songs']:>6}")
    ratio = [a["seconds"] / b["seconds"] for a, b in zip(rows["content"], rows["md5"],
                                                          strict=True)]
    print(f"content / md5 build time: median {np.median(ratio):.3f} "
          f"(rounds {', '.join(f'{v:.3f}' for v in ratio)})")


def simulate(args) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    n = args.files
    sizes = np.clip(rng.lognormal(6.2, 0.8, n), 20, 8000).astype(np.int64)  # Lakh: ~670
    cluster = np.full(n, -1)
    dup = rng.random(n) < 0.2
    cluster[dup] = rng.integers(0, int(dup.sum()) // 8, int(dup.sum()))
    with tempfile.TemporaryDirectory() as tmp:
        tunes = {}
        for start in range(0, n, 4096):
            files = np.arange(start, min(n, start + 4096))
            sets = []
            for f in files.tolist():
                own = rng.integers(0, 2**32, sizes[f], dtype=np.uint64).astype(np.uint32)
                if cluster[f] >= 0:  # a version: half its shingles from the cluster's tune
                    tune = tunes.setdefault(cluster[f], rng.integers(
                        0, 2**32, 600, dtype=np.uint64).astype(np.uint32))
                    own = np.r_[own[: sizes[f] // 2], rng.choice(tune, min(300, sizes[f]))]
                sets.append(np.unique(own))
            offsets = np.r_[0, np.cumsum([len(s) for s in sets])].astype(np.int32)
            table = pa.table({
                "file": pa.array(files), "md5": pa.array([""] * len(files)),
                "n_shingles": pa.array([len(x) for x in sets], pa.int32()),
                "shingles": pa.ListArray.from_arrays(pa.array(offsets),
                                                     pa.array(np.concatenate(sets))),
                "digest": pa.array(rng.integers(1, 2**62, len(files))),  # no twins
                "error": pa.array([""] * len(files))})
            pq.write_table(table, f"{tmp}/part-{start // 4096:05d}.parquet")
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        code = (
            "import resource, time, numpy as np\n"
            "from musicpairs.grouping import read_fingerprints, group_files\n"
            f"t = time.perf_counter(); md5, counts, digest = read_fingerprints({tmp!r}, {n})\n"
            f"g = group_files(np.arange({n}), md5, counts, folder={tmp!r}, mode='content', "
            "digest=digest)\n"
            "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF)"
            ".ru_maxrss / 1024, len(set(g.root.tolist())))\n")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True).stdout.split()
        seconds, rss, songs = float(out[0]), float(out[1]), int(out[2])
    truth = len(set(cluster[dup].tolist())) + int((~dup).sum())
    print(f"simulated {n} files ({int(dup.sum())} in {len(set(cluster[dup].tolist()))} "
          f"clusters), {int(sizes.sum())} shingles: grouped in {seconds:.1f} s, driver peak "
          f"RSS {rss:.0f} MB (generator {before:.0f} MB); {songs} songs (clusters make "
          f"{truth})")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="what", required=True)
    a = sub.add_parser("accuracy")
    a.add_argument("--lakh", required=True)
    a.add_argument("--pop909")
    a.add_argument("--thresholds", type=int, nargs="+", default=[24, 16, 32])
    b = sub.add_parser("build")
    b.add_argument("path")
    b.add_argument("--rounds", type=int, default=5)
    b.add_argument("--workers", type=int, default=1)
    s = sub.add_parser("simulate")
    s.add_argument("--files", type=int, default=178_000)
    args = p.parse_args()
    try:
        {"accuracy": accuracy, "build": build_cost, "simulate": simulate}[args.what](args)
    except MidiReadError as e:
        sys.exit(f"{e}")


if __name__ == "__main__":
    main()
