"""Files per second per core of ``midi_to_roll`` with each MIDI parser, side by side.

    python bench/bench_midi.py ../shared/data/pop909 [--versions] [--limit N] [--repeat R]

Each pass is one fresh process, pinned to one core, that converts every file with one
parser (as one build worker would). Passes of the three parsers take turns, ``--repeat``
rounds, so drift on a noisy machine hits all three alike; separate processes keep one
parser's heap (pretty_midi and miditoolkit build millions of small objects) from slowing
another. Imports, and reading every file once into the page cache, are outside the timing.
Target: symusic >= 50x pretty_midi.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

PARSERS = ("symusic", "pretty_midi", "miditoolkit")


def list_files(root: Path, versions: bool, limit: int) -> list[Path]:
    files = sorted(root.glob("[0-9][0-9][0-9]/[0-9][0-9][0-9].mid"))
    if versions:
        files += sorted(root.glob("[0-9][0-9][0-9]/versions/*.mid"))
    return files[:limit] if limit else files


def one_pass(parser: str, files: list[Path]) -> dict:
    """Time midi_to_roll over the files in this process (the --worker mode)."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    from musicpairs import midi_to_roll

    midi_to_roll(files[0], parser=parser)  # imports
    for f in files:  # this machine drops its page cache eagerly: time parsing, not disk
        f.read_bytes()
    steps = 0
    t0 = time.perf_counter()
    for f in files:
        steps += midi_to_roll(f, parser=parser).n_steps
    return {"parser": parser, "files": len(files), "seconds": time.perf_counter() - t0,
            "steps": steps}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", type=Path, help="the POP909 folder (NNN/NNN.mid)")
    ap.add_argument("--versions", action="store_true", help="also NNN/versions/*.mid")
    ap.add_argument("--limit", type=int, default=0, help="at most N files")
    ap.add_argument("--repeat", type=int, default=1, help="rounds of one pass per parser")
    ap.add_argument("--worker", choices=PARSERS, help=argparse.SUPPRESS)
    args = ap.parse_args()
    files = list_files(args.root, args.versions, args.limit)
    if not files:
        raise SystemExit(f"no POP909 files under {args.root}")
    if args.worker:
        print(json.dumps(one_pass(args.worker, files)))
        return

    totals = {p: {"files": 0, "seconds": 0.0, "steps": 0} for p in PARSERS}
    for r in range(args.repeat):
        for parser in PARSERS[r % 3:] + PARSERS[: r % 3]:
            cmd = [sys.executable, __file__, str(args.root), "--worker", parser,
                   "--limit", str(args.limit)] + (["--versions"] if args.versions else [])
            out = json.loads(subprocess.run(cmd, check=True, capture_output=True,
                                            text=True).stdout)
            for key in ("files", "seconds", "steps"):
                totals[parser][key] += out[key]
            print(f"  round {r + 1} {parser}: {out['seconds']:.2f} s", file=sys.stderr)
    steps = {t["steps"] for t in totals.values()}
    assert len(steps) == 1, f"parsers disagree on song lengths: {totals}"

    base = totals["pretty_midi"]["files"] / totals["pretty_midi"]["seconds"]
    print(f"midi_to_roll over {len(files)} POP909 files, {args.repeat} pass(es) per parser, "
          f"one process on one core per pass; {platform.machine()}, "
          f"Python {platform.python_version()}")
    print()
    print("| parser | files | seconds | files/s/core | ms/file | vs pretty_midi |")
    print("|---|---:|---:|---:|---:|---:|")
    for parser in PARSERS:
        t = totals[parser]
        rate = t["files"] / t["seconds"]
        print(f"| {parser} | {t['files']} | {t['seconds']:.2f} | {rate:,.1f} | "
              f"{1000 / rate:.2f} | {rate / base:.1f}x |")


if __name__ == "__main__":
    main()
