"""Scoring G on the valid split: while training (with example PNGs and MIDI), and to
tune the decoding settings stored with each checkpoint."""

from __future__ import annotations

import dataclasses
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from musicpairs.config import TrainConfig
from musicpairs.loader import LoaderError, PairStream
from musicpairs.model.metrics import POLYPHONY_BINS, f1_scores, pitch_classes_per_bar
from musicpairs.model.rolls import (
    DECODE_GRID,
    DEFAULT_DECODE,
    FRAME_P,
    LEVELS,
    ONSET_P,
    PLANES,
    TRANSPOSITIONS,
    decode_probabilities,
    note_cells,
    to_levels,
)
from musicpairs.roll import FRAME, ONSET
from musicpairs.shards import ShardMeta

log = logging.getLogger(__name__)


def _near(cells: np.ndarray, other: np.ndarray, tolerance: int) -> int:
    """How many of ``cells`` (bool [..., W]) have an ``other`` cell of the same pitch at
    most ``tolerance`` steps away."""
    grown = other.copy()
    for k in range(1, tolerance + 1):
        grown[..., k:] |= other[..., :-k]
        grown[..., :-k] |= other[..., k:]
    return int(np.count_nonzero(cells & grown))


def note_count(planes: np.ndarray) -> int:
    """Notes in planes [..., 2, 128, W] as :func:`~musicpairs.roll.planes_to_notes` reads
    them: an onset, or a frame run that starts without one."""
    onset, frame = planes[..., ONSET, :, :] > 0, planes[..., FRAME, :, :] > 0
    before = np.zeros_like(frame)
    before[..., 1:] = frame[..., :-1]
    return int(np.count_nonzero(onset | (frame & ~before)))


def polyphony(planes: np.ndarray) -> np.ndarray:
    """Histogram of pitches sounding per step (0 .. POLYPHONY_BINS - 1 or more)."""
    voices = np.count_nonzero(planes[..., FRAME, :, :] > 0, axis=-2).reshape(-1)
    return np.bincount(np.minimum(voices, POLYPHONY_BINS - 1), minlength=POLYPHONY_BINS)


def qualified_share(planes: np.ndarray, steps: int) -> float:
    """The share of notes in planes [..., 2, 128, W] at least ``steps`` long (1.0 when
    there are none), read as :func:`~musicpairs.roll.planes_to_notes` reads them."""
    onset, frame = planes[..., ONSET, :, :] > 0, planes[..., FRAME, :, :] > 0
    sounding = onset | frame
    before = np.zeros_like(sounding)
    before[..., 1:] = sounding[..., :-1]
    starts = onset | (sounding & ~before)
    # A note is qualified when it still sounds, unrestruck, ``steps - 1`` steps later.
    still = starts.copy()
    for k in range(1, steps):
        later = np.zeros_like(still)
        later[..., :-k] = sounding[..., k:] & ~starts[..., k:]
        still &= later
    notes = int(np.count_nonzero(starts))
    return int(np.count_nonzero(still)) / notes if notes else 1.0


def target_scores(real: np.ndarray, qualified_steps: int = 2,
                  bar_steps: int | None = None) -> dict[str, Any]:
    """What :func:`decoding_scores` compares decoded notes with that depends on the real
    planes alone: their qualified-note rate and, with ``bar_steps``, their pitch classes
    per non-empty bar (None without)."""
    return {"real_qualified_notes": qualified_share(real, qualified_steps),
            "real_pitch_classes_per_bar": (None if bar_steps is None else
                                           pitch_classes_per_bar(real[:, FRAME], bar_steps))}


def decoding_scores(planes: np.ndarray, real: np.ndarray, tolerance: int = 1,
                    qualified_steps: int = 2, bar_steps: int | None = None,
                    reference: dict[str, Any] | None = None) -> dict[str, Any]:
    """Scores of one channel's decoded planes against the real ones (uint8 [N, 2, 128,
    W]), for tuning: frame (tp, fp, fn) and F1; onset precision (generated onsets with a
    real one of the same pitch within ``tolerance`` steps), recall (the converse) and
    their F1; the ratio of decoded to real notes; the total variation distance of the
    polyphony histograms; the qualified-note rates (notes at least ``qualified_steps``
    long) of both; and with ``bar_steps``, the pitch classes per non-empty bar of both
    (:func:`~musicpairs.model.metrics.pitch_classes_per_bar`; None without
    ``bar_steps``). ``reference``: :func:`target_scores` of ``real``, when already
    computed (tuning scores many decodings against the same targets)."""
    gen_frame, real_frame = planes[:, FRAME] > 0, real[:, FRAME] > 0
    tp = int(np.count_nonzero(gen_frame & real_frame))
    counts = [tp, int(np.count_nonzero(gen_frame)) - tp, int(np.count_nonzero(real_frame)) - tp]
    gen_onset, real_onset = planes[:, ONSET] > 0, real[:, ONSET] > 0
    generated, wanted = int(np.count_nonzero(gen_onset)), int(np.count_nonzero(real_onset))
    precision = _near(gen_onset, real_onset, tolerance) / generated if generated else 1.0
    recall = _near(real_onset, gen_onset, tolerance) / wanted if wanted else 1.0
    onset_f1 = (2 * precision * recall / (precision + recall)) if precision + recall else 0.0
    ours, theirs = polyphony(planes), polyphony(real)
    return {"frame_counts": counts, "frame_f1": f1_scores(counts)["f1"], "onset_f1": onset_f1,
            "note_ratio": note_count(planes) / max(note_count(real), 1),
            "polyphony_tv": float(0.5 * np.abs(ours / max(ours.sum(), 1)
                                               - theirs / max(theirs.sum(), 1)).sum()),
            "qualified_notes": qualified_share(planes, qualified_steps),
            "pitch_classes_per_bar": (None if bar_steps is None else
                                      pitch_classes_per_bar(planes[:, FRAME], bar_steps)),
            **(reference or target_scores(real, qualified_steps, bar_steps))}


#: What tuning asks of the decoded valid notes before it compares F1: a note count
#: within these bounds of the real targets', a polyphony histogram within this total
#: variation distance of theirs, a qualified-note rate within this of theirs, and
#: pitch classes per bar (UPC, when scored) within these bounds of theirs.
NOTE_RATIO = (0.8, 1.25)
POLYPHONY_TV = 0.25
QUALIFIED_GAP = 0.05
UPC_RATIO = (0.9, 1.1)


def _outside(ratio: float, bounds: tuple[float, float]) -> float:
    """How far (in log ratio) ``ratio`` lies outside ``bounds`` (0: inside)."""
    ratio, (low, high) = max(ratio, 1e-6), bounds
    return max(0.0, np.log(low / ratio)) + max(0.0, np.log(ratio / high))


def _shortfall(scores: dict[str, Any]) -> float:
    """How far decoded notes miss :data:`NOTE_RATIO`, :data:`POLYPHONY_TV`,
    :data:`QUALIFIED_GAP` and :data:`UPC_RATIO` (0: within all four)."""
    gap = abs(scores["qualified_notes"] - scores["real_qualified_notes"])
    out = (_outside(scores["note_ratio"], NOTE_RATIO)
           + max(0.0, scores["polyphony_tv"] - POLYPHONY_TV)
           + max(0.0, gap - QUALIFIED_GAP))
    upc, real_upc = (scores.get(k) for k in ("pitch_classes_per_bar",
                                             "real_pitch_classes_per_bar"))
    if real_upc:  # no real bar sounds, or UPC not scored (drums): no bound
        out += _outside((upc or 0.0) / real_upc, UPC_RATIO)
    return out


def _rank(channels: list[dict[str, Any]]) -> tuple[float, float]:
    """How :func:`tune_decoding`'s settings for every channel rank: first by how far
    they miss the bounds on the notes' shape, then by the mean of frame and onset F1."""
    return (-sum(_shortfall(c) for c in channels),
            float(np.mean([(c["frame_f1"] + c["onset_f1"]) / 2 for c in channels])))


def tune_decoding(probs: np.ndarray, real: np.ndarray,
                  pitch_ranges: list[list[int] | None], *, rounds: int = 3,
                  qualified_steps: int = 2, bar_steps: list[int | None] | None = None,
                  starts: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Per target channel, the decoding settings (values from ``DECODE_GRID``) that
    score best on these pairs: among the settings whose notes look like the real ones
    in number, polyphony, length and pitch classes per bar (:data:`NOTE_RATIO`,
    :data:`POLYPHONY_TV`, :data:`QUALIFIED_GAP`, :data:`UPC_RATIO`; notes of
    ``qualified_steps`` or more qualify; UPC over bars of ``bar_steps[c]``), the best mean
    of frame F1 and onset F1; while no setting does, the one that misses those bounds
    least. (F1 alone rewards sounding every likely pitch at once: a model unsure
    between four chords scores best by playing all four.)

    The search is by coordinates: from the defaults, each setting in turn takes its
    best value with the others held, for up to ``rounds`` rounds or until a round
    changes nothing (about 40 decodings a round, not the grid's ~17,500). With ``starts``
    (per channel, settings found elsewhere, e.g. on G's own output) the search also runs
    from there and the better end is kept: a search from one start can end on a poor
    local optimum that a slightly different model's would not.

    Args:
        probs: uint8 [N, 3C, 128, W], probabilities * 255.
        real: uint8 [N, 2C, 128, W], the real targets.
        pitch_ranges: Per channel, the pitch range decoding keeps (or None: all).
        bar_steps: Per channel, the steps of a bar, or None where UPC is not asked
            (drums); None: not asked of any.

    Returns:
        One dict per channel: the settings (``onset_threshold``, ``frame_threshold``,
        ``restrike_threshold``, ``max_voices``, ``min_steps``), ``pitch_range``, and the
        scores reached (``frame_f1``, ``onset_f1``, ``frame_counts``, ``note_ratio``,
        ``polyphony_tv``, ``qualified_notes``, ``pitch_classes_per_bar`` and the real
        targets' values of the last two).
    """
    out = []
    for c, pitch_range in enumerate(pitch_ranges):
        # Only the onset and frame planes: scores need no velocities.
        onset, frame = (probs[:, PLANES * c + plane].astype(np.float32) / LEVELS
                        for plane in (ONSET_P, FRAME_P))
        truth = real[:, 2 * c : 2 * c + 2]
        bar = None if bar_steps is None else bar_steps[c]
        reference = target_scores(truth, qualified_steps, bar)  # once, not per setting
        seen: dict[tuple, tuple] = {}

        def score(settings: dict[str, Any], onset=onset, frame=frame, truth=truth,
                  pitch_range=pitch_range, bar=bar, reference=reference,
                  seen=seen) -> tuple:
            key = tuple(settings[k] for k in DECODE_GRID)
            if key not in seen:
                sounding, struck = note_cells(onset, frame, pitch_range=pitch_range,
                                              **settings)
                planes = np.stack([sounding, sounding], axis=1)
                planes[:, ONSET] = struck
                scores = decoding_scores(planes, truth, qualified_steps=qualified_steps,
                                         bar_steps=bar, reference=reference)
                seen[key] = ((-_shortfall(scores),
                              (scores["frame_f1"] + scores["onset_f1"]) / 2), scores)
            return seen[key]

        ends = []
        firsts = [{k: DEFAULT_DECODE[k] for k in DECODE_GRID}]
        if starts is not None:
            firsts.append({k: starts[c][k] for k in DECODE_GRID})
        for settings in firsts:
            for _ in range(rounds):
                before = dict(settings)
                for name, values in DECODE_GRID.items():
                    # max() keeps the first of equals: the grid's order breaks ties.
                    best = max(values,
                               key=lambda v, s=settings, name=name: score({**s, name: v})[0])
                    settings[name] = best
                if settings == before:
                    break
            ends.append(settings)
        # max() keeps the first of equals: the search from the defaults.
        settings = max(ends, key=lambda s: score(s)[0])
        out.append({**settings, "pitch_range": pitch_range, **score(settings)[1]})
    return out


class Validator:
    """The first ``samples`` pairs of the valid split (file order), scored with the
    evaluated G (its moving average when the run keeps one) in eval mode.

    Each run reports frame precision / recall / F1 with a generated cell sounding where
    its frame probability is 0.5 or more (the same rule at every step of a run, so the
    curve is comparable), then tunes the decoding settings on these pairs
    (:func:`tune_decoding`), once on G's own probabilities and once on each of their
    means over the source transposed -k..k semitones (k in :data:`~musicpairs.model.
    rolls.TRANSPOSITIONS`), keeps the best, and reports the frame and onset F1 it reaches
    (``valid_tuned_frame_f1``, ``valid_tuned_onset_f1``, ``valid_transpositions``). The
    settings are set as ``model.decode`` and saved with the checkpoint; ``evaluate`` and
    ``convert`` decode with them. The first ``examples`` pairs are written, decoded with them, to
    ``samples/step-NNNNNNNN/<pair_id>.png`` (source, generated and real target),
    ``.mid`` (tracks ``source: <channel>`` and ``generated: <channel>``) and, when a
    SoundFont is found (:mod:`musicpairs.audio`), ``.wav`` of that MIDI.
    """

    def __init__(self, stream: PairStream, meta: ShardMeta, folder: Path | None, *,
                 samples: int, examples: int = 0):
        self.stream, self.meta, self.folder = stream, meta, folder
        self.samples, self.examples = samples, examples if folder is not None else 0
        self._told_no_audio = False

    @classmethod
    def for_run(cls, cfg: TrainConfig, meta: ShardMeta, run: Path) -> Validator | None:
        """A validator for a training run, or None (logged) when the dataset has no
        valid split."""
        stream = valid_stream(cfg.data, cfg.batch_size)
        if stream is None:
            return None
        return cls(stream, meta, run, samples=cfg.eval_samples, examples=cfg.sample_count)

    @torch.no_grad()
    def run(self, model, step: int) -> dict[str, float]:
        """Score ``model`` now (a :class:`~musicpairs.model.train.Pix2Pix`, or anything
        with ``inference_generator``, ``probabilities(source, transpositions)``,
        ``pitch_ranges()`` and a ``decode`` attribute, which is set to the tuned
        settings)."""
        generator = model.inference_generator
        was_training = generator.training
        generator.eval()
        probs: dict[int, list[np.ndarray]] = {k: [] for k in TRANSPOSITIONS}
        reals, rows = [], []
        seen = 0
        try:
            for batch in self.stream:
                n = min(len(batch["pair_id"]), self.samples - seen)
                for k in TRANSPOSITIONS:
                    # (n, 3C, 128, W) as uint8: a quarter of float32's memory.
                    p = model.probabilities(batch["source"][:n], k).float().cpu().numpy()
                    probs[k].append(to_levels(p))
                reals.append(batch["target"][:n].numpy())
                rows += [{"source": batch["source"][i].numpy(),
                          "target": batch["target"][i].numpy(),
                          "pair_id": batch["pair_id"][i]}
                         for i in range(min(n, self.examples - len(rows)))]
                seen += n
                if seen >= self.samples:
                    break
        finally:
            generator.train(was_training)
        if not seen:
            return {}
        real = np.concatenate(reals)
        own = np.concatenate(probs[0])
        frame_p = own[:, FRAME_P::PLANES] >= LEVELS // 2 + 1  # p >= 0.5
        truth = real[:, FRAME::2] > 0
        tp = int(np.count_nonzero(frame_p & truth))
        fixed = f1_scores((tp, int(np.count_nonzero(frame_p)) - tp,
                           int(np.count_nonzero(truth)) - tp))
        qualified_steps = max(1, self.meta.steps_per_beat // 2)
        # UPC as evaluate scores it: over 4-beat bars, and not for drums.
        bar_steps = [None if name == "drums" else 4 * self.meta.steps_per_beat
                     for name in self.meta.target_channels]
        every = {k: own if k == 0 else np.concatenate(probs[k]) for k in TRANSPOSITIONS}
        tuned: dict[int, list[dict[str, Any]]] = {}
        for k, p in every.items():  # G's own output first: its settings start the others'
            tuned[k] = tune_decoding(p, real, model.pitch_ranges(),
                                     qualified_steps=qualified_steps, bar_steps=bar_steps,
                                     starts=tuned.get(TRANSPOSITIONS[0]))
        # max() keeps the first of equals: the fewest passes of G that score best.
        best = max(TRANSPOSITIONS, key=lambda k: _rank(tuned[k]))
        model.decode = {"step": step, "samples": seen, "transpositions": best,
                        "channels": tuned[best]}
        if rows:
            self.write_examples([(row, every[best][i].astype(np.float32) / LEVELS)
                                 for i, row in enumerate(rows)], step, model.decode)
        tuned_counts = np.sum([c["frame_counts"] for c in tuned[best]], axis=0)
        return {**{f"valid_frame_{k}": v for k, v in fixed.items()},
                "valid_tuned_frame_f1": f1_scores(tuned_counts)["f1"],
                "valid_tuned_onset_f1": float(np.mean([c["onset_f1"] for c in tuned[best]])),
                "valid_transpositions": best}

    def write_examples(self, examples: list[tuple[dict[str, Any], np.ndarray]],
                       step: int, decode: dict[str, Any]) -> None:
        from musicpairs.audio import AudioError, find_soundfont, write_audio
        from musicpairs.inspect import render_pair
        from musicpairs.midi import score_to_midi_bytes, write_midi
        from musicpairs.pairing import pair_to_score

        try:
            soundfont = find_soundfont()
        except AudioError as e:
            soundfont = None
            if not self._told_no_audio:
                self._told_no_audio = True
                log.warning("samples without audio: %s", e)

        folder = self.folder / "samples" / f"step-{step:08d}"
        folder.mkdir(parents=True, exist_ok=True)
        meta = self.meta
        # The PNG stacks source, generated and real target as one "pair" whose target
        # channels are the generated ones and then the real ones.
        shown = dataclasses.replace(
            meta, target_channels=tuple(f"{c} (generated)" for c in meta.target_channels)
            + tuple(f"{c} (real)" for c in meta.target_channels),
            target_shape=(2 * meta.target_shape[0], *meta.target_shape[1:]))
        for row, probs in examples:
            generated = decode_probabilities(probs, decode)
            name = re.sub(r"[^A-Za-z0-9._-]", "_", row["pair_id"])
            render_pair(shown, {**row, "target": np.concatenate([generated, row["target"]])},
                        folder / f"{name}.png")
            score = pair_to_score(meta, row["source"], generated)
            score.tracks = [dataclasses.replace(t, name=t.name.replace("target:", "generated:", 1))
                            for t in score.tracks]
            write_midi(score, folder / f"{name}.mid")
            if soundfont is not None:
                write_audio(score_to_midi_bytes(score), folder / f"{name}.wav",
                            soundfont=soundfont)


def valid_stream(data: str, batch_size: int) -> PairStream | None:
    """The valid split in file order, or None (logged) when the dataset has none."""
    try:
        return PairStream(data, "valid", shuffle=False, rank=0, world_size=1,
                          batch_size=batch_size)
    except LoaderError as e:
        log.warning("no evaluation: %s", e)
        return None
