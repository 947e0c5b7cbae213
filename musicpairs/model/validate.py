"""Scoring a run on the valid split while it trains, with example PNGs and MIDI."""

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
from musicpairs.model.metrics import f1_scores, frame_counts
from musicpairs.model.rolls import FRAME_THRESHOLD, generated_to_planes, to_model, to_velocity
from musicpairs.shards import ShardMeta

log = logging.getLogger(__name__)


class Validator:
    """The first ``eval_samples`` pairs of the valid split (file order), scored at each
    evaluation with G in eval mode: L1 in [-1, 1] units (as the training loss) and frame
    precision / recall / F1 (a generated frame sounds from velocity
    ``FRAME_THRESHOLD``). The first ``sample_count`` pairs are written to
    ``samples/step-NNNNNNNN/<pair_id>.png`` (source, generated and real target) and
    ``.mid`` (tracks ``source: <channel>`` and ``generated: <channel>``)."""

    def __init__(self, stream: PairStream, cfg: TrainConfig, meta: ShardMeta, run: Path):
        self.stream, self.cfg, self.meta, self.folder = stream, cfg, meta, run

    @classmethod
    def for_run(cls, cfg: TrainConfig, meta: ShardMeta, run: Path) -> Validator | None:
        """A validator, or None (logged) when the dataset has no valid split."""
        try:
            stream = PairStream(cfg.data, "valid", shuffle=False, rank=0, world_size=1,
                                batch_size=cfg.batch_size)
        except LoaderError as e:
            log.warning("no evaluation: %s", e)
            return None
        return cls(stream, cfg, meta, run)

    @torch.no_grad()
    def run(self, model, step: int) -> dict[str, float]:
        """Score ``model`` (a :class:`~musicpairs.model.train.Pix2Pix`) now."""
        generator = model.generator
        was_training = generator.training
        generator.eval()
        counts = torch.zeros(3, dtype=torch.int64)
        l1_sum, seen = 0.0, 0
        examples: list[tuple[dict[str, Any], np.ndarray]] = []
        try:
            for batch in self.stream:
                n = min(len(batch["pair_id"]), self.cfg.eval_samples - seen)
                source, target = batch["source"][:n], batch["target"][:n]
                with model.autocast():
                    fake = generator(model.to_device(source)).float()  # (n, Ct, 128, W)
                target_on_device = target.to(fake.device)  # copied once, as uint8
                real = to_model(target_on_device)
                l1_sum += float((fake - real).abs().mean(dim=(1, 2, 3)).sum())
                velocity = to_velocity(fake)
                counts += frame_counts(velocity, target_on_device, FRAME_THRESHOLD)
                for i in range(min(n, self.cfg.sample_count - len(examples))):
                    row = {"source": source[i].numpy(), "target": target[i].numpy(),
                           "pair_id": batch["pair_id"][i]}
                    examples.append((row, velocity[i].cpu().numpy()))
                seen += n
                if seen >= self.cfg.eval_samples:
                    break
        finally:
            generator.train(was_training)
        if examples:
            self.write_examples(examples, step)
        scores = {f"valid_frame_{k}": v for k, v in f1_scores(counts).items()}
        return {"valid_l1": l1_sum / max(seen, 1), **scores}

    def write_examples(self, examples: list[tuple[dict[str, Any], np.ndarray]],
                       step: int) -> None:
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
            generated = generated_to_planes(velocity)
            name = re.sub(r"[^A-Za-z0-9._-]", "_", row["pair_id"])
            render_pair(shown, {**row, "target": np.concatenate([generated, row["target"]])},
                        folder / f"{name}.png")
            score = pair_to_score(meta, row["source"], generated)
            score.tracks = [dataclasses.replace(t, name=t.name.replace("target:", "generated:", 1))
                            for t in score.tracks]
            write_midi(score, folder / f"{name}.mid")
