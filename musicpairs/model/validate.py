"""Scoring G on the valid split: while training (with example PNGs and MIDI), and to
tune the decoding thresholds stored with each checkpoint."""

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
from musicpairs.model.metrics import (
    best_thresholds,
    f1_scores,
    frame_counts,
    velocity_histograms,
)
from musicpairs.model.rolls import (
    FRAME_THRESHOLD,
    decode_generated,
    to_model,
    to_velocity,
)
from musicpairs.shards import ShardMeta

log = logging.getLogger(__name__)


class Validator:
    """The first ``samples`` pairs of the valid split (file order), scored with G in
    eval mode.

    Each run reports L1 in [-1, 1] units (as the training loss) and frame precision /
    recall / F1 with a generated frame sounding from velocity ``FRAME_THRESHOLD`` (the
    same rule at every step of a run, so the curve is comparable), then tunes the
    decoding thresholds: per target channel, the frame and onset velocity thresholds
    with the best cell F1 on these pairs (``valid_tuned_frame_f1``). They are set as
    ``model.decode`` and saved with the checkpoint; ``evaluate`` and ``convert`` decode
    with them. The first ``examples`` pairs are written, decoded with them, to
    ``samples/step-NNNNNNNN/<pair_id>.png`` (source, generated and real target) and
    ``.mid`` (tracks ``source: <channel>`` and ``generated: <channel>``).
    """

    def __init__(self, stream: PairStream, meta: ShardMeta, folder: Path | None, *,
                 samples: int, examples: int = 0):
        self.stream, self.meta, self.folder = stream, meta, folder
        self.samples, self.examples = samples, examples if folder is not None else 0

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
        with ``generator``, ``to_device``, ``autocast`` and a ``decode`` attribute, which
        is set to the tuned thresholds)."""
        generator = model.generator
        was_training = generator.training
        generator.eval()
        counts = torch.zeros(3, dtype=torch.int64)
        histograms = torch.zeros(self.meta.target_shape[0] // 2, 2, 2, 128, dtype=torch.int64)
        l1_sum, seen = 0.0, 0
        examples: list[tuple[dict[str, Any], np.ndarray]] = []
        try:
            for batch in self.stream:
                n = min(len(batch["pair_id"]), self.samples - seen)
                source, target = batch["source"][:n], batch["target"][:n]
                with model.autocast():
                    fake = generator(model.to_device(source)).float()  # (n, Ct, 128, W)
                target_on_device = target.to(fake.device)  # copied once, as uint8
                real = to_model(target_on_device)
                l1_sum += float((fake - real).abs().mean(dim=(1, 2, 3)).sum())
                velocity = to_velocity(fake)
                counts += frame_counts(velocity, target_on_device, FRAME_THRESHOLD)
                histograms += velocity_histograms(velocity, target_on_device)
                for i in range(min(n, self.examples - len(examples))):
                    row = {"source": source[i].numpy(), "target": target[i].numpy(),
                           "pair_id": batch["pair_id"][i]}
                    examples.append((row, velocity[i].cpu().numpy()))
                seen += n
                if seen >= self.samples:
                    break
        finally:
            generator.train(was_training)
        tuned = best_thresholds(histograms)
        model.decode = {"step": step, "samples": seen, "channels": tuned}
        if examples:
            self.write_examples(examples, step, model.decode)
        scores = {f"valid_frame_{k}": v for k, v in f1_scores(counts).items()}
        tuned_counts = np.sum([c["frame_counts"] for c in tuned], axis=0)
        return {"valid_l1": l1_sum / max(seen, 1), **scores,
                "valid_tuned_frame_f1": f1_scores(tuned_counts)["f1"]}

    def write_examples(self, examples: list[tuple[dict[str, Any], np.ndarray]],
                       step: int, decode: dict[str, Any]) -> None:
        from musicpairs.inspect import render_pair
        from musicpairs.midi import write_midi
        from musicpairs.pairing import pair_to_score

        folder = self.folder / "samples" / f"step-{step:08d}"
        folder.mkdir(parents=True, exist_ok=True)
        meta = self.meta
        # The PNG stacks source, generated and real target as one "pair" whose target
        # channels are the generated ones and then the real ones.
        shown = dataclasses.replace(
            meta, target_channels=tuple(f"{c} (generated)" for c in meta.target_channels)
            + tuple(f"{c} (real)" for c in meta.target_channels),
            target_shape=(2 * meta.target_shape[0], *meta.target_shape[1:]))
        for row, velocity in examples:
            generated = decode_generated(velocity, decode)
            name = re.sub(r"[^A-Za-z0-9._-]", "_", row["pair_id"])
            render_pair(shown, {**row, "target": np.concatenate([generated, row["target"]])},
                        folder / f"{name}.png")
            score = pair_to_score(meta, row["source"], generated)
            score.tracks = [dataclasses.replace(t, name=t.name.replace("target:", "generated:", 1))
                            for t in score.tracks]
            write_midi(score, folder / f"{name}.mid")


def valid_stream(data: str, batch_size: int) -> PairStream | None:
    """The valid split in file order, or None (logged) when the dataset has none."""
    try:
        return PairStream(data, "valid", shuffle=False, rank=0, world_size=1,
                          batch_size=batch_size)
    except LoaderError as e:
        log.warning("no evaluation: %s", e)
        return None
