"""Melody identification on real files: names erased, measured on songs the classifier
did not train on.

    python bench/melody_accuracy.py --lakh ../shared/data/lakh \
        --pop909 ../shared/data/pop909 --chorales

Truth: the track a file names as its melody (see ``tools/melody_model.py``): Lakh files
with one unambiguous melody/vocal name, POP909's ``MELODY``, the chorales' ``Soprano``.

Cross-validation by song, leaving one Lakh group out: each Lakh near-duplicate group of
``duplicates.json`` is a fold, and the other corpora's groups (a POP909 song with its
versions, a chorale) are spread over those folds by a hash (5 folds without Lakh). For
each fold the classifier is trained (``tools/melody_model.fit``) on the other folds and
scored on this one, with names erased, through ``roles.choose_melody``, as the shipped
model, trained on everything, meets a song it has never seen. A near-duplicate shares
tracks with its group, so a group is all train or all test.

Printed: on Lakh, coverage (files given a melody) and precision (right among those) at
several confidence thresholds, the build's default among them; accuracy on POP909 and
the chorales (no abstention, as a build with ``--melody-confidence 0``); picks of a drum
or percussive track (flag or program 112-127) over every Lakh file; and, with names kept
and the shipped model, whether every file with one unambiguous name gets that track.
A pick that doubles the true line (the same pitch classes on >= 90 % of its onsets, such
as an instrument playing the tune with the voice) is counted apart.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parents[1] / "tools"))

import melody_model as mm  # noqa: E402

from musicpairs.build import BuildConfig  # noqa: E402
from musicpairs.roles import choose_melody, default_model  # noqa: E402
from musicpairs.roll import ONSET  # noqa: E402

THRESHOLDS = (0.0, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.9)


def fold_of(group: str, lakh_groups: list[str]) -> int:
    if group in lakh_groups:
        return lakh_groups.index(group)
    folds = len(lakh_groups) or 5
    return int.from_bytes(hashlib.sha1(group.encode()).digest()[:8], "big") % folds


def doubles(roll, a: int, b: int) -> bool:
    """Whether track a's onsets sit on track b's (same step, same pitch class)."""
    pa, sa = np.nonzero(roll.planes[a, ONSET])
    pb, sb = np.nonzero(roll.planes[b, ONSET])
    other = set(zip(sb.tolist(), (pb % 12).tolist(), strict=True))
    hits = sum((s, p % 12) in other for s, p in zip(sa.tolist(), pa.tolist(), strict=True))
    return len(pa) > 0 and hits / len(pa) >= 0.9


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lakh", type=Path, help="a Lakh folder (duplicates.json groups it)")
    ap.add_argument("--pop909", type=Path, help="the POP909 folder")
    ap.add_argument("--chorales", action="store_true", help="music21's Bach chorales")
    args = ap.parse_args()
    t0 = time.perf_counter()
    default_th = BuildConfig.melody_confidence

    items = list(mm.labelled(args.lakh, args.pop909, args.chorales))
    examples = [mm.example(i) for i in items]
    # Scored: Lakh files, POP909's NNN.mid and the chorales (versions only train).
    scored = [i for i in items if i.main]
    lakh_groups = sorted({i.group for i in items if i.corpus == "lakh"})
    n_folds = len(lakh_groups) or 5
    picks: dict[str, list[tuple[bool, bool, float, bool]]] = defaultdict(list)
    for f in range(n_folds):
        model = mm.fit([e for e in examples
                        if e is not None and fold_of(e.group, lakh_groups) != f])
        for item in scored:
            if fold_of(item.group, lakh_groups) != f:
                continue
            choice = choose_melody(mm.erase_names(item.roll), model=model)
            k = choice.track
            right = k is not None and (k == item.truth or k in item.also_true)
            doubled = k is not None and not right and doubles(item.roll, k, item.truth)
            drum = k is not None and (item.roll.tracks[k].is_drum
                                      or item.roll.tracks[k].program >= 112)
            picks[item.corpus].append((right, doubled, choice.confidence if k is not None
                                       else -1.0, drum))

    print(f"Melody by content, names erased, {n_folds}-fold cross-validation by song "
          "(each file scored by a classifier that never saw its group)\n")
    print("| corpus | files | right | doubling the melody | accuracy | drum/percussive "
          "picks |")
    print("|---|---:|---:|---:|---:|---:|")
    for corpus, got in picks.items():
        right = sum(g[0] for g in got)
        doubled = sum(g[1] for g in got)
        print(f"| {corpus} | {len(got)} | {right} | {doubled} | {right / len(got):.1%} | "
              f"{sum(g[3] for g in got)} |")
    if picks.get("lakh"):
        got = picks["lakh"]
        print(f"\nLakh, names erased, by confidence threshold (`--melody-confidence`; the "
              f"build's default is {default_th}):\n")
        print("| threshold | coverage | precision | precision, doubling counted |")
        print("|---:|---:|---:|---:|")
        for th in sorted({*THRESHOLDS, default_th}):
            kept = [g for g in got if g[2] >= th]
            if not kept:
                continue
            mark = " (default)" if th == default_th else ""
            print(f"| {th:.2f}{mark} | {len(kept) / len(got):.1%} | "
                  f"{sum(g[0] for g in kept) / len(kept):.1%} | "
                  f"{sum(g[0] or g[1] for g in kept) / len(kept):.1%} |")

    if args.lakh is not None:
        # Every Lakh file, the shipped model: never a drum; names kept, a name wins.
        drums = {"names erased": 0, "names kept": 0}
        n_files = named_ok = named_total = 0
        for _, roll in mm.lakh_files(args.lakh):
            n_files += 1
            for label, r in (("names erased", mm.erase_names(roll)), ("names kept", roll)):
                k = choose_melody(r, min_confidence=default_th).track
                if k is not None and (roll.tracks[k].is_drum or roll.tracks[k].program >= 112):
                    drums[label] += 1
            named = mm.named_melody(roll)
            if named is not None:
                named_total += 1
                k = choose_melody(roll, min_confidence=default_th).track
                named_ok += k == named[0] or k in named[1]
        print(f"\nEvery readable Lakh file ({n_files}), shipped model, default threshold: "
              f"drum/percussive picks {drums['names erased']} with names erased, "
              f"{drums['names kept']} with names kept; files with one unambiguous "
              f"melody/vocal name given that track: {named_ok} of {named_total}.")
    info = default_model().info
    print(f"\nShipped model trained on {info.get('trained_on')}; "
          f"{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
