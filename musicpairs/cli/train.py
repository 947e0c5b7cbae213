"""``musicpairs train``: pix2pix on a built dataset, on a GPU or the CPU."""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path

import click

from musicpairs.config import TrainConfig

# (option, TrainConfig field, type, help); defaults come from TrainConfig.
_OPTIONS = [
    ("--epochs", "epochs", int, "Passes over the train split (unless --steps)."),
    ("--steps", "steps", int, "Optimizer steps (overrides --epochs)."),
    ("--batch-size", "batch_size", int, "Samples per step on each GPU/rank."),
    ("--device", "device", str, "auto, cpu, cuda or cuda:N."),
    ("--amp", "amp", click.Choice(["auto", "bf16", "fp16", "off"]),
     "Mixed precision (auto: bf16 on a GPU that has it)."),
    ("--num-workers", "num_workers", int, "DataLoader worker processes per rank."),
    ("--ngf", "ngf", int, "Generator filters in its first layer."),
    ("--ndf", "ndf", int, "Discriminator filters in its first layer."),
    ("--max-filters", "max_filters", int,
     "The most filters of any U-Net level (default: 8 x ngf, as pix2pix)."),
    ("--depth", "depth", int, "U-Net levels (default: all the pitch axis allows)."),
    ("--n-layers", "n_layers", int, "PatchGAN stride-2 layers (3: 70x70 patches)."),
    ("--norm", "norm", click.Choice(["batch", "instance"]), "Norm layers."),
    ("--dropout", "dropout", float, "U-Net inner decoder dropout."),
    ("--loss", "loss", click.Choice(["gan", "recon"]),
     "gan: cGAN + lambda * reconstruction; recon: the reconstruction term only (no D)."),
    ("--gan-mode", "gan_mode", click.Choice(["bce", "lsgan"]), "GAN loss."),
    ("--recon", "recon", click.Choice(["bce", "l1"]),
     "Reconstruction term. bce: onset and frame probabilities (BCE) and velocity where "
     "notes sound; l1: pix2pix's plain L1 on the velocity planes."),
    ("--lambda-recon", "lambda_recon", float, "Weight of the reconstruction term."),
    ("--recon-weighting", "recon_weighting", click.Choice(["balanced", "uniform"]),
     "balanced: sounding and silent cells weigh half each; uniform: the plain mean."),
    ("--d-sees", "d_sees", click.Choice(["samples", "probabilities"]),
     "What D sees of G's notes: a roll drawn from its probabilities, or them."),
    ("--harmony/--no-harmony", "harmony", bool,
     "Give G the source's pitch classes on every octave as one more plane."),
    ("--pitch-rows", "pitch_rows", str,
     "LO:HI, the pitches G works on (HI excluded); notes outside are neither learned "
     "nor generated."),
    ("--ema", "ema", float, "Decay of G's weight average that is evaluated (0: none)."),
    ("--lr", "lr", float, "Adam learning rate."),
    ("--beta1", "beta1", float, "Adam beta1."),
    ("--beta2", "beta2", float, "Adam beta2."),
    ("--decay-start", "decay_start", float,
     "Fraction of the run after which the learning rate decays linearly to 0."),
    ("--transpose", "transpose", int, "Random transposition of pairs, +-semitones."),
    ("--shuffle-buffer", "shuffle_buffer", int, "Loader shuffle block, in samples."),
    ("--checkpoint-every", "checkpoint_every", int, "Steps between checkpoints."),
    ("--keep-checkpoints", "keep_checkpoints", int, "Step checkpoints kept (0: all)."),
    ("--eval-every", "eval_every", int, "Steps between valid-split evaluations."),
    ("--eval-samples", "eval_samples", int, "Valid samples per evaluation."),
    ("--sample-count", "sample_count", int, "Valid pairs written as PNG + MIDI per eval."),
    ("--log-every", "log_every", int, "Steps between metrics.jsonl lines."),
    ("--seed", "seed", int, "Seeds weights, dropout and data order."),
]
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainConfig)
             if f.default is not dataclasses.MISSING}


def _options(command):
    for flag, field, kind, text in reversed(_OPTIONS):
        default = _DEFAULTS[field]
        command = click.option(flag, field, type=kind, default=default, show_default=True,
                               help=text)(command)
    return command


@click.command()
@click.option("--data", type=str, help="Dataset folder or fsspec URL (from musicpairs build).")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Run folder: config, checkpoints, metrics, samples.")
@_options
@click.option("--compile/--no-compile", "compile_", default=False, help="torch.compile G and D.")
@click.option("--log-pair-ids", is_flag=True, help="Write pairs.jsonl: pair ids per step.")
@click.option("--resume", is_flag=True,
              help="Continue the run in --out from last.pt (its config; options given here "
                   "may change only how long, how often and where).")
@click.option("--json", "as_json", is_flag=True, help="Print the final summary as JSON.")
@click.pass_context
def train(ctx: click.Context, data, out, compile_, log_pair_ids, resume, as_json, **options):
    """Train pix2pix (U-Net generator, PatchGAN discriminator) on a dataset.

    Several GPUs: torchrun --nproc_per_node N -m musicpairs train ...
    """
    from musicpairs.model.rundir import read_run_config
    from musicpairs.model.train import train as run_training

    given = {name for name in ctx.params
             if ctx.get_parameter_source(name) != click.core.ParameterSource.DEFAULT}
    options["compile"], options["log_pair_ids"] = compile_, log_pair_ids
    given = {"compile" if g == "compile_" else g for g in given}
    if resume:
        saved = Path(out) / "config.json"
        if not saved.is_file():
            raise click.ClickException(f"{out}: nothing to resume (no config.json)")
        values = read_run_config(Path(out)).to_dict()
        values.update({k: v for k, v in options.items() if k in given})
        if data is not None:
            values["data"] = data
        values["out"] = out
    else:
        if data is None:
            raise click.UsageError("--data is required (unless --resume)")
        values = {"data": data, "out": out, **options}
    try:
        cfg = TrainConfig.from_dict(values)
    except ValueError as e:
        raise click.ClickException(str(e)) from e
    summary = run_training(cfg, resume=resume, progress=_Progress())
    if as_json:
        click.echo(json.dumps(summary))
    else:
        click.echo(f"step {summary['step']}/{summary['total_steps']} in "
                   f"{summary['seconds']:.1f} s -> {summary['out']}")


class _Progress:
    """Progress on stderr: on a terminal a bar with the ETA, redrawn every step;
    otherwise (a log file, a pipe) a line every ``every`` seconds. Either way, once the
    first steps are timed, one line with the seconds a step takes and what the run will.

    Args:
        every: Seconds between lines when stderr is not a terminal.
        clock: Seconds, monotonic (tests give their own).
        tty: Whether stderr is a terminal (None: ask it).
    """

    #: Steps timed before the estimate (the first steps pay for warm-up).
    WARM_STEPS = 3

    def __init__(self, every: float = 10.0, clock=time.monotonic, tty: bool | None = None):
        self.every, self.clock = every, clock
        self.tty = sys.stderr.isatty() if tty is None else tty
        self.start = self.last_line = None
        self.start_step = 0
        self.told = False

    def __call__(self, step: int, total: int, last: dict) -> None:
        now = self.clock()
        if self.start is None:
            # Timing starts after the first step of this process (imports, warm-up).
            self.start, self.start_step, self.last_line = now, step, now
            return
        per_step = (now - self.start) / (step - self.start_step)
        left = per_step * (total - step)
        if not self.told and step - self.start_step >= self.WARM_STEPS:
            self.told = True
            click.echo(f"train: {per_step:.2f} s a step; {total} steps take about "
                       f"{_clock(per_step * total)} ({_clock(left)} from here)", err=True)
        parts = [f"{k}={last[k]:.4g}" for k in ("loss_d", "loss_g_gan", "loss_g_recon",
                                                "valid_frame_f1") if k in last]
        done = step / max(total, 1)
        if self.tty:
            bar = "#" * int(20 * done)
            click.echo(f"\rtrain: [{bar:<20}] {step}/{total} ETA {_clock(left)} "
                       + " ".join(parts), nl=False, err=True)
            if step >= total:
                click.echo("", err=True)
        elif now - self.last_line >= self.every or step >= total:
            self.last_line = now
            click.echo(f"train: {step}/{total} ({100 * done:.0f} %), ETA {_clock(left)} "
                       + " ".join(parts), err=True)


def _clock(seconds: float) -> str:
    """h:mm:ss or m:ss."""
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, sec = divmod(rest, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"
