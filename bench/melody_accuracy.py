"""Melody found by content: accuracy with track names erased.

    python bench/melody_accuracy.py ../shared/data/pop909 [--chorales]

POP909: the truth is the track named MELODY. Chorales (music21's corpus, written to MIDI
here): the truth is the part named Soprano; a pick that doubles the soprano line (the same
pitches, or an octave apart, on at least 90 % of its onsets) is counted separately.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

from musicpairs import midi_to_roll
from musicpairs.roles import find_melody
from musicpairs.roll import ONSET


def erase_names(roll):
    tracks = tuple(dataclasses.replace(t, name="") for t in roll.tracks)
    return dataclasses.replace(roll, tracks=tracks)


def pop909(root: Path) -> tuple[int, int, Counter]:
    files = sorted(root.glob("[0-9][0-9][0-9]/[0-9][0-9][0-9].mid"))
    ok, picked = 0, Counter()
    for f in files:
        roll = midi_to_roll(f)
        truth = [k for k, t in enumerate(roll.tracks) if t.name.strip().upper() == "MELODY"]
        k = find_melody(erase_names(roll))
        ok += k in truth
        picked[roll.tracks[k].name if k is not None else "(none)"] += 1
    return ok, len(files), picked


def doubles(roll, a: int, b: int) -> bool:
    """Whether track a's onsets sit on track b's (same step, same pitch class)."""
    pa, sa = np.nonzero(roll.planes[a, ONSET])
    pb, sb = np.nonzero(roll.planes[b, ONSET])
    other = set(zip(sb.tolist(), (pb % 12).tolist(), strict=True))
    hits = sum((s, p % 12) in other for s, p in zip(sa.tolist(), pa.tolist(), strict=True))
    return len(pa) > 0 and hits / len(pa) >= 0.9


def chorales() -> tuple[int, int, int]:
    from music21 import corpus

    ok = doubled = n = 0
    with tempfile.TemporaryDirectory() as tmp:
        for name in corpus.chorales.Iterator(returnType="filename"):
            path = Path(tmp) / (name.replace("/", "_") + ".mid")
            try:
                corpus.parse(name).write("midi", fp=path)
            except Exception:  # noqa: BLE001 - a few corpus files do not expand
                continue
            roll = midi_to_roll(path)
            truth = [k for k, t in enumerate(roll.tracks) if t.name == "Soprano"]
            if not truth:
                continue
            n += 1
            k = find_melody(erase_names(roll))
            if k in truth:
                ok += 1
            elif k is not None and doubles(roll, k, truth[0]):
                doubled += 1
    return ok, doubled, n


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pop909", type=Path)
    ap.add_argument("--chorales", action="store_true", help="also the Bach chorales")
    args = ap.parse_args()
    t0 = time.perf_counter()
    ok, n, picked = pop909(args.pop909)
    print("| corpus | songs | melody found | accuracy |")
    print("|---|---:|---:|---:|")
    print(f"| POP909 (names erased) | {n} | {ok} | {ok / n:.1%} |")
    if args.chorales:
        c_ok, c_doubled, c_n = chorales()
        print(f"| Bach chorales (names erased) | {c_n} | {c_ok} | {c_ok / c_n:.1%} |")
        print(f"| ... plus picks doubling the soprano | {c_n} | {c_ok + c_doubled} | "
              f"{(c_ok + c_doubled) / c_n:.1%} |")
    print(f"\nPOP909 picks by true track name: {dict(picked)}; {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
