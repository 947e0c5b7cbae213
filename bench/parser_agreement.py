"""Do the three parsers give the same rolls on a real corpus? Which files differ, and why?

    python bench/parser_agreement.py ../shared/data/pop909 [--versions]

A file where pretty_midi differs is explained when it has notes of one pitch that overlap
on one track (pretty_midi ends them all at the first note-off) or zero-length notes
(pretty_midi drops them); see musicpairs.midi.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from musicpairs import MidiReadError, midi_to_roll, read_midi


def pretty_midi_documented_difference(path: Path) -> bool:
    for t in read_midi(path).tracks:
        n = t.notes
        if np.any(n.end == n.start):
            return True
        order = np.lexsort((n.start, n.pitch))
        p, s, e = n.pitch[order], n.start[order], n.end[order]
        if np.any((p[1:] == p[:-1]) & (s[1:] < e[:-1])):
            return True
    return False


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", type=Path)
    ap.add_argument("--versions", action="store_true")
    args = ap.parse_args()
    files = sorted(args.root.glob("[0-9][0-9][0-9]/[0-9][0-9][0-9].mid"))
    if args.versions:
        files += sorted(args.root.glob("[0-9][0-9][0-9]/versions/*.mid"))
    same = {"pretty_midi": 0, "miditoolkit": 0}
    explained = unexplained = unreadable = 0
    for f in files:
        try:
            ref = midi_to_roll(f)
        except MidiReadError as e:
            unreadable += 1
            print(f"unreadable: {e}")
            continue
        for parser in same:
            if midi_to_roll(f, parser=parser) == ref:
                same[parser] += 1
            elif parser == "pretty_midi" and pretty_midi_documented_difference(f):
                explained += 1
            else:
                unexplained += 1
                print(f"differs ({parser}): {f}")
    n = len(files) - unreadable
    print("\n| files | identical: miditoolkit | identical: pretty_midi | pretty_midi differs, "
          "as documented (overlap, zero length) | differs otherwise |")
    print("|---:|---:|---:|---:|---:|")
    print(f"| {n} | {same['miditoolkit']} | {same['pretty_midi']} | {explained} | "
          f"{unexplained} |")


if __name__ == "__main__":
    main()
