"""End-to-end melody2accomp build against an LPD-style reference script.

    python bench/bench_build.py ../shared/data/pop909 [--songs N] [--reference-songs M]
    python bench/bench_build.py ../shared/data/lakh --src lakh

POP909 (``--src pop909``, the default) or a Lakh folder (``--src lakh``: every MIDI file of
its layouts, real files with ten tracks on average, repeated names, lyric tracks; the
reference skips files pretty_midi cannot read, as a user's script would).

Side by side, in one run:

* musicpairs: ``build`` (symusic, Dask) on 1 worker and on 2 workers, with the build's
  default partitions (``--songs-per-shard``, 64 songs: one Dask task each); the clusters
  are started, and each worker has built a small partition into a throwaway folder (what
  a worker process pays once: imports, the melody classifier's weights, buffer pools;
  nothing against a real corpus), before the clock starts. The clock covers crawl,
  parse, pair, shard writing and the manifest.
* reference: what LPD-style scripts do, one process on one core: pretty_midi parse, the
  beat grid from ``get_beats``, ``get_piano_roll`` of every instrument sampled on it (as
  the Lakh Pianoroll Dataset converts a file), then the melody by track name, onsets
  from frame starts, the same windows (256 steps on downbeats, hop 128, the same
  empty-window rule), ``np.savez_compressed`` per file. ``--reference melody-first``
  looks for a track named MELODY before rolling anything and skips the file without
  one (a cheaper script than LPD's conversion; on Lakh most files name no melody).

The three run interleaved, in rounds. Prints files/s/core, the ratio, the 2-worker speedup
and bytes per pair. Targets: musicpairs >= 60x the reference per core on POP909, >= 40x
on Lakh; 2 workers >= 1.7x one.

With ``--src lakh`` it also times, file by file in one pass (so that both see the same
machine), bare symusic parsing (``symusic.Score(path)``) against ``midi_to_roll(path)``
(parse, grid notes; the planes are painted when first read) and against
``midi_to_roll(path).planes`` (painted): target >= 30 %.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np


def reference_file(path: Path, out: Path, window=256, hop=128, spb=4, min_notes=4,
                   melody_first: bool = False) -> int:
    """LPD-style: pretty_midi + get_piano_roll + savez_compressed. Returns pairs kept."""
    import pretty_midi

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            pm = pretty_midi.PrettyMIDI(str(path))
        except Exception:  # noqa: BLE001 - a user's script skips what it cannot read
            return 0
    beats = pm.get_beats()
    if len(beats) < 2:
        return 0
    end = pm.get_end_time()
    step = np.diff(beats, append=beats[-1] + (beats[-1] - beats[-2])) / spb
    times = (beats[:, None] + step[:, None] * np.arange(spb)).ravel()
    times = times[times < end]
    melody = [k for k, i in enumerate(pm.instruments) if i.name.strip().upper() == "MELODY"]
    if melody_first and not melody:
        return 0
    # As LPD converts a file: every instrument rolled; then the melody by name.
    rolls = [i.get_piano_roll(times=times) for i in pm.instruments]
    others = [k for k, i in enumerate(pm.instruments) if k not in melody and not i.is_drum]
    if not melody or not others:
        return 0
    src = rolls[melody[0]]
    tgt = np.max([rolls[k] for k in others], axis=0)

    def planes(frame):
        frame = np.clip(frame, 0, 127).astype(np.uint8)
        onset = np.where(np.diff(frame > 0, axis=1, prepend=0) > 0, frame, 0).astype(np.uint8)
        return np.stack([onset, frame])

    src, tgt = planes(src), planes(tgt)
    downbeats = np.searchsorted(times, pm.get_downbeats() - 1e-6)
    starts, kept_src, kept_tgt = [], [], []
    for d in downbeats:
        if d < len(times) and (not starts or d >= starts[-1] + hop):
            starts.append(int(d))
    for s in starts:
        a = np.zeros((2, 128, window), np.uint8)
        b = np.zeros((2, 128, window), np.uint8)
        piece_a, piece_b = src[..., s : s + window], tgt[..., s : s + window]
        a[..., : piece_a.shape[-1]] = piece_a
        b[..., : piece_b.shape[-1]] = piece_b
        if np.count_nonzero(a[0]) >= min_notes and np.count_nonzero(b[0]) >= min_notes:
            kept_src.append(a)
            kept_tgt.append(b)
    if kept_src:
        np.savez_compressed(out / (path.stem + ".npz"), source=np.stack(kept_src),
                            target=np.stack(kept_tgt))
    return len(kept_src)


def run_reference(files: list[Path], out: Path, melody_first: bool = False) -> dict:
    out.mkdir(parents=True)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    t0 = time.perf_counter()
    pairs = sum(reference_file(f, out, melody_first=melody_first) for f in files)
    seconds = time.perf_counter() - t0
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
    size = sum(p.stat().st_size for p in out.iterdir())
    return {"files": len(files), "seconds": seconds, "pairs": pairs, "bytes": size, "cores": 1}


def _warm_worker(src: str, root: str) -> None:
    """What a worker pays once per process, paid before the clock: it builds a partition
    of the corpus's first songs into a throwaway folder (imports, the melody classifier's
    weights, the shard writer's buffer pool, first page faults)."""
    import itertools

    from musicpairs.build import BuildConfig, build_partition
    from musicpairs.datasets import make_corpus

    songs = list(itertools.islice(make_corpus(src, root).songs(), 16))
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "_build").mkdir()
        cfg = BuildConfig(src=src, path=root, task="melody2accomp", out=tmp)
        build_partition(0, songs, cfg)


def run_musicpairs(src: str, root: Path, songs: int, workers: int, tmp: Path,
                   songs_per_shard: int) -> dict:
    from dask.distributed import Client

    from musicpairs.build import BuildConfig, build
    from musicpairs.cluster import local_cluster

    tmp.mkdir(parents=True, exist_ok=True)
    out = tmp / f"musicpairs-{workers}"
    with local_cluster(workers) as cluster:
        with Client(cluster) as client:  # workers import what a build needs, off the clock
            client.run(_warm_worker, src, str(root))
        cfg = BuildConfig(src=src, path=str(root), task="melody2accomp", out=str(out),
                          scheduler=cluster.scheduler_address, limit=songs,
                          songs_per_shard=songs_per_shard)
        t0 = time.perf_counter()
        summary = build(cfg)
        seconds = time.perf_counter() - t0
    manifest = json.loads((out / "manifest.json").read_text())
    size = sum(s["bytes"] for s in manifest["shards"])
    return {"files": summary["files"], "seconds": seconds, "pairs": summary["pairs"],
            "bytes": size, "cores": workers}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", type=Path, help="the POP909 or Lakh folder")
    ap.add_argument("--src", choices=("pop909", "lakh"), default="pop909")
    ap.add_argument("--reference", choices=("lpd", "melody-first"), default="lpd",
                    help="the reference script (see above)")
    ap.add_argument("--songs", type=int, default=None, help="songs for musicpairs (all)")
    ap.add_argument("--reference-songs", type=int, default=100,
                    help="songs for the (slow) reference; its rate is per file")
    ap.add_argument("--songs-per-shard", type=int, default=None,
                    help="songs per partition (default: the build's own default)")
    ap.add_argument("--repeat", type=int, default=3,
                    help="rounds, each a slice of the reference and both builds (times add up)")
    args = ap.parse_args()
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "error")
    if args.songs_per_shard is None:
        from musicpairs.build import BuildConfig

        args.songs_per_shard = BuildConfig.songs_per_shard

    from musicpairs.datasets import make_corpus

    songs = list(make_corpus(args.src, str(args.root)).songs())
    args.songs = args.songs or len(songs)

    def warm():  # this machine drops its page cache eagerly: time the work, not the disk
        for song in songs[: args.songs]:
            for v in song.versions:
                v.read_bytes()

    # The reference's songs are spread over the corpus (Lakh's folders are in md5 order).
    every = max(1, args.songs // args.reference_songs)
    ref_files = [Path(v.uri) for s in songs[: args.songs : every][: args.reference_songs]
                 for v in s.versions]
    tmp = Path(tempfile.mkdtemp(prefix="musicpairs-bench-"))
    names = ["reference (pretty_midi + get_piano_roll + savez_compressed)"
             + (", melody first" if args.reference == "melody-first" else ""),
             "musicpairs build, 1 worker", "musicpairs build, 2 workers"]
    results: dict[str, dict | None] = dict.fromkeys(names)
    rounds: list[dict[str, float]] = []  # files/s/core of each pipeline, per round

    def add(name, got):
        rounds[-1][name] = got["files"] / got["seconds"] / got["cores"]
        prev = results[name]
        results[name] = got if prev is None else {
            k: prev[k] + got[k] if k != "cores" else got[k] for k in got}

    try:
        # Rounds interleave all three (this machine's speed drifts by tens of percent
        # over minutes): each round times a slice of the reference files, then both
        # builds, in alternating order; times add up over the rounds.
        for r in range(args.repeat):
            rounds.append({})
            warm()
            add(names[0], run_reference(ref_files[r :: args.repeat], tmp / f"ref{r}",
                                        melody_first=args.reference == "melody-first"))
            for workers in (1, 2) if r % 2 == 0 else (2, 1):
                warm()
                add(names[workers], run_musicpairs(args.src, args.root, args.songs, workers,
                                                   tmp / f"r{r}", args.songs_per_shard))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    rate = {k: r["files"] / r["seconds"] / r["cores"] for k, r in results.items()}
    ref = next(iter(rate.values()))
    one, two = (results["musicpairs build, 1 worker"], results["musicpairs build, 2 workers"])
    what = ("POP909 melody2accomp (songs with their versions)" if args.src == "pop909"
            else f"Lakh melody2accomp ({args.root})")
    print(f"{what}, {os.cpu_count()} cores, {args.songs_per_shard} songs per partition")
    print()
    print("| pipeline | files | pairs | seconds | files/s/core | vs reference | bytes/pair |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        print(f"| {name} | {r['files']} | {r['pairs']} | {r['seconds']:.1f} | "
              f"{rate[name]:,.1f} | {rate[name] / ref:.1f}x | "
              f"{r['bytes'] / max(r['pairs'], 1):,.0f} |")
    speedup = (two["files"] / two["seconds"]) / (one["files"] / one["seconds"])
    print(f"\n2 workers vs 1: {speedup:.2f}x")
    # Each round on its own: the ratios within a round share the machine's speed of
    # that minute, so their median is the steadiest figure.
    print("\n| round | reference files/s | 1 worker vs reference | 2 workers vs 1 |")
    print("|---|---:|---:|---:|")
    per_core, scaling = [], []
    for r, got in enumerate(rounds):
        per_core.append(got[names[1]] / got[names[0]])
        scaling.append(2 * got[names[2]] / got[names[1]])
        print(f"| {r + 1} | {got[names[0]]:.1f} | {per_core[-1]:.1f}x | {scaling[-1]:.2f}x |")
    print(f"| median | | {np.median(per_core):.1f}x | {np.median(scaling):.2f}x |")
    if args.src == "lakh":
        print()
        parse_vs_roll([Path(v.uri) for s in songs[: args.songs] for v in s.versions],
                      rounds=args.repeat)


def parse_vs_roll(files: list[Path], rounds: int) -> None:
    """Bare symusic parsing against midi_to_roll, file by file, on one core."""
    import symusic

    from musicpairs.errors import MidiReadError
    from musicpairs.roll import midi_to_roll

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    print("| round | files | symusic.Score(path) files/s | midi_to_roll(path) files/s | "
          "... .planes files/s | midi_to_roll / symusic | with planes / symusic |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    ratios, painted = [], []
    for r in range(rounds):
        parse = roll = planes = 0.0
        for f in files:
            t0 = time.perf_counter()
            try:
                symusic.Score(str(f))
            except Exception:  # noqa: BLE001, S110 - unreadable files cost both their try
                pass
            t1 = time.perf_counter()
            try:
                midi_to_roll(f)
            except MidiReadError:
                pass
            t2 = time.perf_counter()
            try:
                midi_to_roll(f).planes  # noqa: B018 - painting is what is timed
            except MidiReadError:
                pass
            t3 = time.perf_counter()
            parse, roll, planes = parse + t1 - t0, roll + t2 - t1, planes + t3 - t2
        ratios.append(parse / roll)
        painted.append(parse / planes)
        n = len(files)
        print(f"| {r + 1} | {n} | {n / parse:,.0f} | {n / roll:,.0f} | {n / planes:,.0f} "
              f"| {parse / roll:.0%} | {parse / planes:.0%} |")
    print(f"| median | | | | | {np.median(ratios):.0%} | {np.median(painted):.0%} |")


if __name__ == "__main__":
    main()
