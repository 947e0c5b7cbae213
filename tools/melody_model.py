"""Train musicpairs' melody classifier on weak labels from real corpora.

    python tools/melody_model.py --lakh ../shared/data/lakh --pop909 ../shared/data/pop909 \
        --chorales [--out musicpairs/data/melody_model.json]

Weak labels: the track a file names as its melody.

* Lakh (``lmd_full`` and the other layouts): files with one unambiguous melody or vocal
  name (``Melody``, ``Lead Vocal``, ``Gesang``...; see ``roles.melody_name_strength``); a
  name the parser split into parts by program counts as its biggest part.
* POP909: ``NNN.mid``'s ``MELODY``, and its ``versions/`` files that name one melody.
* The Bach chorales of music21's corpus: the part named ``Soprano``.

Features are computed with the names erased (the classifier must find melodies where
names say nothing), and the other candidates of the file are the negatives. The scorer
(linear over tanh-squashed standardized features; ``--hidden N`` adds a hidden layer,
which measured worse on Lakh) is trained with a softmax over each file's candidates: it
learns which track of a song is the melody, not what melodies look like in general.
Files of the Lakh groups (near-duplicates) and of one POP909 song stay together in one
fold when ``bench/melody_accuracy.py`` cross-validates with :func:`fit`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from musicpairs.errors import MidiReadError
from musicpairs.roles import (
    FEATURES,
    MelodyModel,
    melody_name_strength,
    track_features,
)
from musicpairs.roll import Roll, midi_to_roll


@dataclass
class Example:
    """One labelled file: its candidates' features (names erased) and which is the melody.

    Attributes:
        corpus: ``lakh``, ``pop909`` or ``chorales``.
        group: Files of one group are one song (a Lakh near-duplicate group, a POP909
            song): cross-validation keeps them in one fold.
        file: Where it came from.
        values: float64 [candidates, F].
        tracks: int64 [candidates]: the candidates' track indices.
        truth: The melody's track index (a candidate).
        also_true: Track indices that also count as right (other parts of its name, a
            part doubling it).
        drumlike: bool [candidates]: the candidate has the drum flag or a percussive
            program (the 'never a drum' check; never true when the rules hold).
    """

    corpus: str
    group: str
    file: str
    values: np.ndarray
    tracks: np.ndarray
    truth: int
    also_true: tuple[int, ...]
    drumlike: np.ndarray


def erase_names(roll: Roll) -> Roll:
    """The same roll with every track name empty (its grid notes kept)."""
    erased = dataclasses.replace(
        roll, tracks=tuple(dataclasses.replace(t, name="") for t in roll.tracks))
    erased._grid = roll.grid()
    return erased


def named_melody(roll: Roll) -> tuple[int, tuple[int, ...]] | None:
    """The track a file names as its melody: one unambiguous name (strength 2), its
    biggest part; with the other parts of that name. None when no such name."""
    strong = [k for k, t in enumerate(roll.tracks)
              if not t.is_drum and melody_name_strength(t.name) == 2]
    names = {roll.tracks[k].name.strip().casefold() for k in strong}
    if len(names) != 1:
        return None
    notes = np.diff(roll.grid().bounds(len(roll.tracks)))
    best = max(strong, key=lambda k: notes[k])
    return best, tuple(k for k in strong if k != best)


@dataclass
class Labelled:
    """A file whose melody its names tell: the roll, the truth, and its song group."""

    corpus: str
    group: str
    file: str
    main: bool  # POP909's NNN.mid, a Lakh or chorale file (not a POP909 version)
    roll: Roll
    truth: int
    also_true: tuple[int, ...] = ()


def example(item: Labelled) -> Example | None:
    """An Example, or None when the true track is not a content candidate."""
    roll = item.roll
    feats = track_features(erase_names(roll))
    tracks = np.flatnonzero(feats.candidate)
    if item.truth not in tracks or len(tracks) < 2:
        return None  # nothing to choose between, or the truth cannot be chosen
    drumlike = np.array([roll.tracks[k].is_drum or roll.tracks[k].program >= 112
                         for k in tracks], bool)
    return Example(item.corpus, item.group, item.file, feats.values[tracks], tracks,
                   item.truth, item.also_true, drumlike)


def midi_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in (".mid", ".midi"))


def lakh_groups(root: Path) -> dict[str, str]:
    """md5 -> group name from ``duplicates.json`` (empty when there is none)."""
    dup = root / "duplicates.json"
    if not dup.is_file():
        return {}
    return {md5: g for g, members in json.loads(dup.read_text()).items() for md5 in members}


def _read(path: Path) -> Roll | None:
    try:
        return midi_to_roll(path)
    except MidiReadError:
        return None


def lakh_files(root: Path) -> Iterator[tuple[Path, Roll]]:
    """Every readable MIDI file under a Lakh folder, with its roll."""
    for path in midi_files(root):
        roll = _read(path)
        if roll is not None:
            yield path, roll


def labelled(lakh: Path | None, pop909: Path | None, chorales: bool,
             versions: bool = True) -> Iterator[Labelled]:
    """Every file of the corpora given whose names tell its melody."""
    if lakh is not None:
        groups = lakh_groups(lakh)
        for path, roll in lakh_files(lakh):
            named = named_melody(roll)
            if named is not None:
                yield Labelled("lakh", groups.get(path.stem, path.stem), str(path), True,
                               roll, *named)
    if pop909 is not None:
        for song in sorted(p for p in pop909.iterdir() if p.is_dir()):
            files = [song / f"{song.name}.mid"]
            files += sorted((song / "versions").glob("*.mid")) if versions else []
            for path in files:
                roll = _read(path)
                named = None if roll is None else named_melody(roll)
                if named is not None:
                    yield Labelled("pop909", f"pop909/{song.name}", str(path),
                                   path == files[0], roll, *named)
    if chorales:
        yield from _chorales()


def _chorales() -> Iterator[Labelled]:
    from music21 import corpus

    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in corpus.chorales.Iterator(returnType="filename"):
            path = Path(tmp) / (name.replace("/", "_") + ".mid")
            try:
                corpus.parse(name).write("midi", fp=path)
                roll = midi_to_roll(path)
            except Exception:  # noqa: BLE001, S112 - a few corpus files do not expand
                continue
            truth = [k for k, t in enumerate(roll.tracks) if t.name == "Soprano"]
            if truth:
                yield Labelled("chorales", f"bach/{name}", name, True, roll, truth[0])


def collect(lakh: Path | None, pop909: Path | None, chorales: bool) -> list[Example]:
    """The training examples of every labelled file of the corpora given."""
    return [ex for item in labelled(lakh, pop909, chorales)
            if (ex := example(item)) is not None]


#: Each corpus's weight in the loss (per file): Lakh, the corpus the build meets most,
#: has the fewest labels.
CORPUS_WEIGHT = {"lakh": 4.0, "pop909": 0.5, "chorales": 1.0}


def fit(examples: list[Example], *, hidden: int = 0, steps: int = 4000, lr: float = 0.02,
        l2: float = 1e-3, seed: int = 0) -> MelodyModel:
    """Train the scorer with a softmax over each file's candidates (full-batch Adam).

    ``hidden=0`` is the linear scorer (``w1`` the identity, kept fixed).
    """
    x = np.concatenate([e.values for e in examples])
    file_of = np.repeat(np.arange(len(examples)), [len(e.tracks) for e in examples])
    y = np.concatenate([(e.tracks == e.truth).astype(float) for e in examples])
    weight = np.array([CORPUS_WEIGHT[e.corpus] for e in examples])
    weight /= weight.sum()
    starts = np.concatenate(([0], np.cumsum([len(e.tracks) for e in examples])[:-1]))
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    std[std < 1e-6] = 1.0
    z = (x - mean) / std

    rng = np.random.default_rng(seed)
    linear = hidden == 0  # a linear model over tanh-squashed standardized features
    width = z.shape[1] if linear else hidden
    params = {"w1": np.eye(width) if linear else rng.normal(0, 1 / np.sqrt(z.shape[1]),
                                                               (z.shape[1], width)),
              "b1": np.zeros(width), "w2": rng.normal(0, 1 / np.sqrt(width), width),
              "b2": np.zeros(1)}
    frozen = {"w1", "b1"} if linear else set()
    m = {k: np.zeros_like(v) for k, v in params.items()}
    v = {k: np.zeros_like(v) for k, v in params.items()}
    squashed = np.tanh(z) if linear else None  # the linear scorer's fixed first layer
    for step in range(1, steps + 1):
        h = squashed if linear else np.tanh(z @ params["w1"] + params["b1"])
        s = h @ params["w2"] + params["b2"][0]
        s_max = np.maximum.reduceat(s, starts)[file_of]
        ex = np.exp(s - s_max)
        p = ex / np.add.reduceat(ex, starts)[file_of]
        ds = (p - y) * weight[file_of]  # d loss / d score (softmax cross-entropy)
        grads = {"w2": h.T @ ds + l2 * params["w2"], "b2": np.array([ds.sum()])}
        if not linear:
            dh = np.outer(ds, params["w2"]) * (1 - h**2)
            grads["w1"] = z.T @ dh + l2 * params["w1"]
            grads["b1"] = dh.sum(axis=0)
        for k in params.keys() - frozen:  # Adam
            m[k] = 0.9 * m[k] + 0.1 * grads[k]
            v[k] = 0.999 * v[k] + 0.001 * grads[k] ** 2
            m_hat, v_hat = m[k] / (1 - 0.9**step), v[k] / (1 - 0.999**step)
            params[k] -= lr * m_hat / (np.sqrt(v_hat) + 1e-8)
    counts = {c: sum(e.corpus == c for e in examples) for c in CORPUS_WEIGHT}
    info = {"trained_on": counts, "hidden": hidden, "steps": steps, "l2": l2,
            "trainer": "tools/melody_model.py"}
    return MelodyModel(mean, std, params["w1"], params["b1"], params["w2"],
                       float(params["b2"][0]), info)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lakh", type=Path, help="a Lakh folder (with duplicates.json if any)")
    ap.add_argument("--pop909", type=Path, help="the POP909 folder")
    ap.add_argument("--chorales", action="store_true", help="music21's Bach chorales")
    ap.add_argument("--hidden", type=int, default=0, help="hidden units (0: linear)")
    ap.add_argument("--out", type=Path,
                    default=Path(__file__).parents[1] / "musicpairs/data/melody_model.json")
    args = ap.parse_args()
    examples = collect(args.lakh, args.pop909, args.chorales)
    model = fit(examples, hidden=args.hidden)
    args.out.write_text(json.dumps(model.to_json(), indent=None) + "\n")
    print(f"{len(examples)} labelled files ({model.info['trained_on']}); "
          f"{len(FEATURES)} features; wrote {args.out} ({args.out.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
