"""``quickstart``: from nothing downloaded to a converted chorale, in one call.

Builds the Bach chorales bundled with music21 as melody2accomp pairs, trains a small
pix2pix for a time budget (the number of steps is measured on this machine first, so a
run is reproducible once its steps are known), evaluates it against the baselines on the
test split, and converts the melody of a held-out (test-split) chorale. Every stage
picks up what an earlier call left in the folder: a finished build or run is reused,
an interrupted one resumed.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from musicpairs.config import TrainConfig
from musicpairs.errors import MusicpairsError

log = logging.getLogger(__name__)

#: Windows of 4 bars (16 beats): short chorales give many, and a small net learns them fast.
WINDOW = 64
#: The generator and run that fit ~5 minutes on a 2-core CPU.
MODEL = {"ngf": 32, "ndf": 32, "batch_size": 16, "lr": 5e-4, "dropout": 0.0}


def _build(out: Path, limit: int | None, say: Callable[[str], None]) -> dict[str, Any]:
    from musicpairs.build import BuildConfig, build

    data = out / "data"
    if (data / "manifest.json").is_file():
        say(f"dataset: {data} (built before)")
        return json.loads((data / "manifest.json").read_text())["counts"]
    say("dataset: building the Bach chorales (music21's corpus) as melody2accomp pairs ...")
    cfg = BuildConfig(src="bach", task="melody2accomp", out=str(data), window=WINDOW,
                      hop=WINDOW // 2, limit=limit, workers=min(os.cpu_count() or 1, 4))
    summary = build(cfg, resume=data.exists())
    say(f"dataset: {summary['pairs']} pairs (train {summary['splits']['train']}, valid "
        f"{summary['splits']['valid']}, test {summary['splits']['test']}) from "
        f"{summary['songs']} chorales in {summary['seconds']:.0f} s")
    return summary


def measure_steps(cfg: TrainConfig, seconds: float, *, trials: int = 4) -> int:
    """How many training steps of ``cfg`` fit in ``seconds`` on this machine (timed on
    real batches after a warm-up step; at least 20)."""
    from musicpairs.loader import PairStream
    from musicpairs.model.train import Pix2Pix, resolve_device

    stream = PairStream(cfg.data, "train", shuffle=False, rank=0, world_size=1,
                        batch_size=cfg.batch_size)
    batch = next(iter(stream))
    device = resolve_device(cfg.device)
    model = Pix2Pix(cfg, stream.meta, device, total_steps=trials + 1)
    model.step(batch["source"], batch["target"])
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(trials):
        model.step(batch["source"], batch["target"])
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    per_step = (time.perf_counter() - start) / trials
    return max(20, int(seconds / per_step))


def _train(out: Path, data: Path, minutes: float, steps: int | None, model: dict[str, Any],
           device: str, say: Callable[[str], None]) -> Path:
    from musicpairs.model.checkpoint import LAST, load_checkpoint
    from musicpairs.model.train import train

    run = out / "run"
    cfg, resume = None, False
    if (run / "config.json").is_file():
        saved = TrainConfig.from_dict(json.loads((run / "config.json").read_text()))
        if (run / LAST).is_file():
            if int(load_checkpoint(run / LAST)["step"]) >= saved.steps:
                say(f"model: {run / LAST} (trained before, {saved.steps} steps)")
                return run / LAST
            cfg, resume = saved, True
        else:  # stopped before its first checkpoint: start it again
            shutil.rmtree(run)
            steps = steps or saved.steps
    if cfg is None:
        cfg = TrainConfig(data=str(data), out=str(run), steps=1, device=device,
                          num_workers=1, **model)
        if steps is None:
            # Loading, the valid evaluation and checkpoints take a few percent.
            steps = measure_steps(cfg, 0.93 * minutes * 60)
        cfg = TrainConfig.from_dict({**cfg.to_dict(), "steps": steps,
                                     "checkpoint_every": max(steps // 4, 10),
                                     "eval_every": 0, "log_every": max(steps // 50, 1)})
    say(f"model: training pix2pix (ngf {cfg.ngf}, {cfg.steps} steps of {cfg.batch_size}) "
        f"{'(resumed) ' if resume else ''}...")
    summary = train(cfg, resume=resume)
    say(f"model: {summary['step']} steps in {summary['seconds'] / 60:.1f} min; valid frame F1 "
        f"{summary.get('valid_tuned_frame_f1', float('nan')):.3f} at the tuned thresholds")
    return run / LAST


def _held_out_chorale(data: Path, out: Path) -> tuple[str, Path]:
    """The first test-split chorale, written to MIDI (all voices, as music21 exports it)."""
    import pyarrow.parquet as pq

    from musicpairs.datasets.bach import chorale_midi_bytes

    shards = sorted((data / "test").glob("*.parquet")) or sorted((data / "valid").glob(
        "*.parquet"))
    if not shards:
        raise MusicpairsError(f"{data}: no test or valid chorale to convert")
    song = pq.read_table(shards[0], columns=["song_id"]).column("song_id")[0].as_py()
    path = out / (song.replace("/", "_") + ".mid")
    path.write_bytes(chorale_midi_bytes(song))
    return song, path


def quickstart(out: str | os.PathLike = "musicpairs-quickstart", *, minutes: float = 5.0,
               steps: int | None = None, limit: int | None = None, device: str = "auto",
               model: dict[str, Any] | None = None,
               say: Callable[[str], None] = print) -> dict[str, Any]:
    """Build, train, evaluate and convert (see the module docstring).

    Args:
        out: The folder for everything: ``data/``, ``run/``, ``eval/``, the chorale and
            its conversion.
        minutes: Training time budget (measured into a number of steps).
        steps: Train exactly this many steps instead.
        limit: Build only the first N chorales (tests).
        model: Overrides of the generator and run settings (``MODEL``).
        say: Where progress lines go.

    Returns:
        The paths written and the evaluation's scores.
    """
    from musicpairs.model.convert import convert
    from musicpairs.model.evaluate import evaluate, format_report

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    counts = _build(out, limit, say)
    data = out / "data"
    checkpoint = _train(out, data, minutes, steps, {**MODEL, **(model or {})}, device, say)
    say("evaluate: the test split, against the baselines ...")
    scores = evaluate(checkpoint, str(data), split="test", device=device, out=out / "eval")
    report = format_report(scores)
    song, melody = _held_out_chorale(data, out)
    converted = out / f"{melody.stem}-converted.mid"
    summary = convert(checkpoint, melody, converted, render=converted.with_suffix(".png"),
                      device=device)
    return {"out": str(out), "dataset": str(data), "pairs": counts.get("pairs"),
            "checkpoint": str(checkpoint), "evaluation": scores, "report": report,
            "chorale": song, "input_midi": str(melody), "converted_midi": str(converted),
            "converted_png": summary["render"], "generated_notes": summary["generated_notes"],
            "seconds": time.perf_counter() - started}
