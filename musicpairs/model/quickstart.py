"""``quickstart``: from nothing downloaded to a converted chorale, in one call.

Builds the Bach chorales bundled with music21 as melody2accomp pairs, trains a small
pix2pix, evaluates it against the baselines on the test split (with an HTML report of
rolls and audio), and converts the melody of a held-out (test-split) chorale, all within
``--minutes``: what the build leaves, less what evaluating and converting take, is
measured into a number of training steps
on this machine (so a run is reproducible once its steps are known). Every stage picks
up what an earlier call left in the folder: a finished build is reused, an interrupted
one resumed; a finished run is reused, or trained further when a call's budget fits
more steps than it has (``OUT/quickstart.json`` records the budget).
"""

from __future__ import annotations

import json
import logging
import math
import os
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
#: The generator and run that fit ~5 minutes on a 2-core CPU. The chorales' four voices
#: lie within pitches 36-88: G works on the 64 rows 28-91, half the work of all 128.
MODEL = {"ngf": 32, "ndf": 32, "batch_size": 16, "lr": 5e-4, "dropout": 0.0,
         "pitch_rows": "28:92"}
#: Seconds kept for evaluating on the test split, writing the report with its audio and
#: converting a chorale (~20 s on the 2-core development machine) and for what training
#: adds to its steps (loading, checkpoints).
RESERVE_SECONDS = 35
#: Fewer steps than this teach the model little: the quickstart says so.
FEW_STEPS = 300
STATE = "quickstart.json"


def _build(out: Path, limit: int | None, say: Callable[[str], None]) -> dict[str, Any]:
    from musicpairs.build import BuildConfig, build

    data = out / "data"
    if (data / "manifest.json").is_file():
        say(f"dataset: {data} (built before)")
        return json.loads((data / "manifest.json").read_text())["counts"]
    say("dataset: building the Bach chorales (music21's corpus) as melody2accomp pairs ...")
    cfg = BuildConfig(src="bach", task="melody2accomp", out=str(data), window=WINDOW,
                      hop=WINDOW // 2, limit=limit, workers=min(os.cpu_count() or 1, 4),
                      songs_per_shard=32)
    started, shown = time.perf_counter(), [time.perf_counter()]

    def progress(done: int, total: int | None) -> None:
        if time.perf_counter() - shown[0] >= 10:
            shown[0] = time.perf_counter()
            say(f"dataset: {done} partitions of {total or '?'} built "
                f"({shown[0] - started:.0f} s)")

    summary = build(cfg, resume=data.exists(), progress=progress)
    say(f"dataset: {summary['pairs']} pairs (train {summary['splits']['train']}, valid "
        f"{summary['splits']['valid']}, test {summary['splits']['test']}) from "
        f"{summary['songs']} chorales in {summary['seconds']:.0f} s")
    return summary


def seconds_per_step(cfg: TrainConfig, *, warmup: int = 3, trials: int = 8) -> float:
    """Seconds one training step of ``cfg`` takes on this machine, batches loaded as
    training loads them (``cfg.num_workers`` loader processes share the cores): the
    median of ``trials`` steps timed one by one after ``warmup`` steps (the first steps
    pay for allocation and the loader's start; a median is not fooled by one step
    slowed by another process)."""
    from musicpairs.loader import PairLoader, PairStream
    from musicpairs.model.train import Pix2Pix, resolve_device

    stream = PairStream(cfg.data, "train", shuffle=True, seed=cfg.seed, rank=0,
                        world_size=1, transpose=cfg.transpose)
    device = resolve_device(cfg.device)
    loader = PairLoader(stream, cfg.batch_size, num_workers=cfg.num_workers,
                        pin_memory=device.type == "cuda",
                        generator=torch.Generator().manual_seed(cfg.seed))
    model = Pix2Pix(cfg, stream.meta, device, total_steps=warmup + trials)
    times = []
    batches = iter(loader)
    for k in range(warmup + trials):
        start = time.perf_counter()
        batch = next(batches, None)
        if batch is None:  # a tiny dataset: time on what it has
            break
        model.step(batch["source"], batch["target"])
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if k >= warmup:
            times.append(time.perf_counter() - start)
    del batches
    if not times:
        raise MusicpairsError(f"{cfg.data}: too few training pairs to time a step")
    return sorted(times)[len(times) // 2]


def _train(out: Path, data: Path, budget: tuple[float, float], steps: int | None,
           model: dict[str, Any], device: str, say: Callable[[str], None],
           stop_at: float | None) -> Path:
    """Train the run to ``steps``, or to the steps that fit in ``budget``: (training
    seconds of the whole budget, seconds this call has left for training). A new run,
    the rest of an interrupted one, or more steps on a finished one."""
    from musicpairs.model.checkpoint import EXPORT, LAST, load_checkpoint
    from musicpairs.model.rundir import read_run_config
    from musicpairs.model.train import train

    run = out / "run"
    saved = read_run_config(run) if (run / "config.json").is_file() else None
    done = int(load_checkpoint(run / LAST)["step"]) if (run / LAST).is_file() else 0
    cfg = saved or TrainConfig(data=str(data), out=str(run), steps=1, device=device,
                               num_workers=1, **model)
    if steps is None:
        per_step = seconds_per_step(cfg)
        whole, left = budget
        steps = max(1, min(int(whole / per_step), done + int(left / per_step)))
        say(f"plan: {per_step:.2f} s a training step here: {steps} steps fit in "
            f"{whole:.0f} s of training" + (f" ({done} done before)" if done else ""))
        if steps < FEW_STEPS:
            more = math.ceil((FEW_STEPS * per_step - whole) / 60)
            say(f"warning: {steps} steps are too few for the model to learn much (its "
                f"conversions will be mostly noise); {more} more --minutes give "
                f"{FEW_STEPS}+, or train on a GPU (--device cuda)")
    # evaluate and convert read the small weights-only export, when the run has one.
    export = run / EXPORT if (run / EXPORT).is_file() else run / LAST
    if done >= steps:
        say(f"model: {export} (trained before, {done} steps; a larger --minutes trains "
            "it further)")
        return export
    cfg = TrainConfig.from_dict({**cfg.to_dict(), "steps": steps,
                                 "checkpoint_every": max(steps // 4, 10), "eval_every": 0,
                                 "keep_checkpoints": 1,
                                 "log_every": max(steps // 50, 1)})
    say(f"model: training pix2pix (ngf {cfg.ngf}, {done} -> {steps} steps of "
        f"{cfg.batch_size}) ...")
    started, shown = time.perf_counter(), [time.perf_counter()]

    def progress(step: int, total: int, _last: dict) -> None:
        now = time.perf_counter()
        if now - shown[0] >= 10 and step < total:
            shown[0] = now
            left = (now - started) / max(step - done, 1) * (total - step)
            say(f"model: step {step}/{total}, about {left:.0f} s left")

    summary = train(cfg, resume=done > 0, progress=progress, stop_at=stop_at)
    if summary["step"] < steps:
        say(f"model: the budget ran out at step {summary['step']} of {steps} (steps took "
            "longer than measured); again with the same --minutes finishes them")
    say(f"model: {summary['step']} steps, {summary['seconds'] / 60:.1f} min this time; valid "
        f"frame F1 {summary.get('valid_tuned_frame_f1', float('nan')):.3f}, onset F1 "
        f"{summary.get('valid_tuned_onset_f1', float('nan')):.3f} with the decoding tuned "
        "on it")
    return run / EXPORT


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
        minutes: The whole call's time budget: build, training, evaluation, conversion.
            Training gets what the build leaves less ``RESERVE_SECONDS``; a run already
            in the folder is trained further when that fits more steps than it has.
        steps: Train to exactly this many steps instead.
        limit: Build only the first N chorales (tests).
        model: Overrides of the generator and run settings (``MODEL``).
        say: Where progress lines go.

    Returns:
        The paths written and the evaluation's scores.
    """
    from musicpairs.audio import write_audio
    from musicpairs.model.convert import convert
    from musicpairs.model.evaluate import evaluate, format_report

    started = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state_path = out / STATE
    state = json.loads(state_path.read_text()) if state_path.is_file() else {}
    built = (out / "data" / "manifest.json").is_file()
    if steps is None:
        say(f"plan: {minutes:g} min in all: "
            + ("the dataset (built before), " if built else
               "build the dataset (about 40 s on 2 cores), ")
            + f"then train for what is left but ~{RESERVE_SECONDS} s, then evaluate and "
              "convert")
    counts = _build(out, limit, say)
    if not built:
        state["build_seconds"] = round(time.perf_counter() - started, 1)
    data = out / "data"
    # Training time as if the whole budget were this run's, build included (a folder
    # called again with a larger --minutes trains on to that budget's steps), and the
    # time this call has left for it.
    whole = max(minutes * 60 - state.get("build_seconds", 0) - RESERVE_SECONDS, 1.0)
    left = max(started + minutes * 60 - RESERVE_SECONDS - time.perf_counter(), 1.0)
    # Steps slower than measured (a busy machine) stop training at the budget's end.
    stop_at = None if steps is not None else (
        time.monotonic() + started + minutes * 60 - RESERVE_SECONDS - time.perf_counter())
    checkpoint = _train(out, data, (whole, left), steps, {**MODEL, **(model or {})}, device,
                        say, stop_at)
    state.update(minutes=max(minutes, state.get("minutes", 0)))
    state_path.write_text(json.dumps(state, indent=2) + "\n")
    say("evaluate: the test split, against the baselines ...")
    scores = evaluate(checkpoint, str(data), split="test", device=device, out=out / "eval",
                      report=True, examples=3)
    report = format_report(scores)
    song, melody = _held_out_chorale(data, out)
    converted = out / f"{melody.stem}-converted.mid"
    summary = convert(checkpoint, melody, converted, render=converted.with_suffix(".png"),
                      device=device)
    audio = None
    if not scores.get("report_audio_error"):
        audio = write_audio(converted.read_bytes(), converted.with_suffix(".wav"))["audio"]
    return {"out": str(out), "dataset": str(data), "pairs": counts.get("pairs"),
            "checkpoint": str(checkpoint), "evaluation": scores, "report": report,
            "report_html": scores["files"]["report"],
            "audio_error": scores.get("report_audio_error"),
            "chorale": song, "input_midi": str(melody), "converted_midi": str(converted),
            "converted_png": summary["render"], "converted_audio": audio,
            "generated_notes": summary["generated_notes"],
            "seconds": time.perf_counter() - started}

