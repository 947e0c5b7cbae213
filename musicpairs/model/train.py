"""pix2pix training: the D-then-G step, the losses, and the run (checkpoints, resume, DDP).

The objective is Isola et al.'s: G minimises L_cGAN(G, D) + lambda * L_recon(G), D
maximises L_cGAN, with D's loss halved (it learns more slowly than G), both with Adam
(lr 2e-4, betas 0.5, 0.999), the learning rate constant and then decaying linearly to 0.
``loss="recon"`` trains the reconstruction-only ablation with the same code and no D.

What is made for piano rolls rather than photographs (see :mod:`rolls`): G reads rolls in
[0, 1] (silence is 0, as its zero padding), with the source's pitch classes as one more
plane; the reconstruction term is by default a BCE on onset and frame probabilities plus
a velocity regressed where notes sound (``recon="l1"``: pix2pix's plain L1 on the
velocity planes); D sees G's input with G's output read as probabilities, or the real
target as 0/1 planes; an exponential moving average of G is what is evaluated and
exported; and the pitches the training targets use are kept, so that decoding keeps
notes within them.

Several GPUs: ``torchrun --nproc_per_node N -m musicpairs train ...``. Every rank reads
its own part of the train split (PairStream's rank split, equal counts), G and D are
wrapped in DistributedDataParallel, and only rank 0 writes files.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from musicpairs.config import TrainConfig
from musicpairs.loader import PairLoader, PairStream
from musicpairs.model.checkpoint import (
    LAST,
    discriminator_for,
    generator_for,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    save_generator,
    set_rng_state,
)
from musicpairs.model.rolls import (
    FRAME_P,
    PLANES,
    VELOCITY,
    all_rows,
    model_input,
    pitched_planes,
    probabilities,
    target_probabilities,
    to_unit,
    transposed_mean,
)
from musicpairs.model.rundir import RunLogs, TrainError, prepare_run, truncate_log
from musicpairs.model.validate import Validator
from musicpairs.shards import ShardMeta

log = logging.getLogger(__name__)


def init_weights(module: nn.Module, gain: float = 0.02) -> None:
    """pix2pix's ``normal`` init: conv weights N(0, 0.02), biases 0, BatchNorm scale
    N(1, 0.02) and shift 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)


def resolve_device(name: str) -> torch.device:
    """``auto``: this rank's CUDA device when there is one, else the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise TrainError("--device cuda: no CUDA device is available")
        if device.index is None:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return device


def amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype (None: full precision)."""
    if amp == "auto":
        return (torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported()
                else None)
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "off": None}[amp]


class Pix2Pix:
    """G, D, their optimizers and schedulers, the AMP scaler; one training step.

    Args:
        cfg: The run's config.
        meta: The dataset's shard metadata (shapes and channels).
        device: Where to train.
        total_steps: The run's length, for the learning-rate decay.
    """

    def __init__(self, cfg: TrainConfig, meta: ShardMeta, device: torch.device,
                 total_steps: int):
        self.cfg, self.meta, self.device = cfg, meta, device
        self.total_steps = total_steps
        self.channels_last = device.type == "cuda"
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        self.generator = generator_for(cfg, meta)
        init_weights(self.generator)
        self.generator.to(device, memory_format=fmt)
        self.discriminator = None
        if cfg.loss == "gan":
            self.discriminator = discriminator_for(cfg, meta)
            init_weights(self.discriminator)
            self.discriminator.to(device, memory_format=fmt)
        self.dtype = amp_dtype(cfg.amp, device)
        #: The moving average of G's weights (and a copy of its buffers): evaluated,
        #: exported and converted with. None with ``ema=0``.
        self.ema = None
        if cfg.ema:
            self.ema = copy.deepcopy(self.generator).eval().requires_grad_(False)
        self.ema_updates = 0
        #: Which pitches the training targets have sounded, per channel (after the
        #: loader's transposition): decoding keeps notes within their range.
        self.pitches = torch.zeros(meta.target_shape[0] // 2, 128, dtype=torch.bool)
        #: Decoding settings tuned on the valid split at the last evaluation.
        self.decode: dict[str, Any] | None = None
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.dtype == torch.float16)

        betas = (cfg.beta1, cfg.beta2)
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=cfg.lr, betas=betas)
        self.sched_g = torch.optim.lr_scheduler.LambdaLR(self.opt_g, self.lr_factor)
        self.opt_d = self.sched_d = None
        if self.discriminator is not None:
            self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=cfg.lr,
                                          betas=betas)
            self.sched_d = torch.optim.lr_scheduler.LambdaLR(self.opt_d, self.lr_factor)

        # What the step calls: DDP wrappers when distributed, compiled when asked. The G
        # step calls D unwrapped: D is not updated there, so its DDP gradient sync must
        # not wait for gradients that never come.
        self.g_step, self.d_step, self.d_plain = (self.generator, self.discriminator,
                                                  self.discriminator)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [device.index] if device.type == "cuda" else None
            self.g_step = DDP(self.generator, device_ids=ids)
            if self.discriminator is not None:
                self.d_step = DDP(self.discriminator, device_ids=ids)
        if cfg.compile:
            self.g_step = torch.compile(self.g_step)
            if self.discriminator is not None:
                self.d_step = torch.compile(self.d_step)
                self.d_plain = torch.compile(self.discriminator)

    def lr_factor(self, step: int) -> float:
        """1 until ``decay_start`` of the run, then linearly down to 0 at its end."""
        start = self.cfg.decay_start * self.total_steps
        if step < start or self.total_steps <= start:
            return 1.0
        return max(0.0, (self.total_steps - step) / (self.total_steps - start))

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def inputs(self, source: torch.Tensor) -> torch.Tensor:
        """uint8 sources (B, Cs, 128, W) -> G's input on the device, (B, Cs [+1], rows,
        W) (copied as uint8: a quarter of the bytes of float)."""
        return self._layout(model_input(source.to(self.device, non_blocking=True),
                                        self.cfg.harmony, self.cfg.rows))

    def autocast(self):
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    @property
    def inference_generator(self) -> nn.Module:
        """What is evaluated and exported: the moving average of G, or G."""
        return self.ema if self.ema is not None else self.generator

    def probabilities(self, source: torch.Tensor, transpositions: int = 0) -> torch.Tensor:
        """uint8 sources -> (B, 3C, 128, W) float probabilities of the evaluated G (call
        it in eval mode, without gradients), averaged over ``transpositions`` semitones
        each way (:func:`~musicpairs.model.rolls.transposed_mean`)."""
        def predict(x: torch.Tensor) -> torch.Tensor:
            with self.autocast():
                raw = self.inference_generator(self.inputs(x))
            return all_rows(probabilities(raw, self.cfg.recon), self.cfg.rows)

        return transposed_mean(predict, source, transpositions,
                               pitched_planes(self.meta.source_channels, 2),
                               pitched_planes(self.meta.target_channels, PLANES))

    def pitch_ranges(self) -> list[list[int] | None]:
        """Per target channel, [lowest, highest] pitch the training targets sounded so
        far (None for a channel that has sounded nothing)."""
        out = []
        for seen in self.pitches:
            where = torch.nonzero(seen).flatten()
            out.append([int(where[0]), int(where[-1])] if len(where) else None)
        return out

    def _update_ema(self) -> None:
        self.ema_updates += 1
        decay = min(self.cfg.ema, (1 + self.ema_updates) / (10 + self.ema_updates))
        with torch.no_grad():
            for avg, p in zip(self.ema.parameters(), self.generator.parameters(), strict=True):
                avg.lerp_(p.detach(), 1 - decay)
            for avg, b in zip(self.ema.buffers(), self.generator.buffers(), strict=True):
                avg.copy_(b)

    def gan_loss(self, logits: torch.Tensor, real: bool) -> torch.Tensor:
        target = torch.full_like(logits, 1.0 if real else 0.0, dtype=torch.float32)
        if self.cfg.gan_mode == "lsgan":
            return F.mse_loss(logits.float(), target)
        return F.binary_cross_entropy_with_logits(logits.float(), target)

    def _weights(self, real: torch.Tensor) -> torch.Tensor | float:
        """Per-cell weights of the reconstruction term: 1 (``uniform``), or sounding and
        silent cells of each target plane weighing half each (``balanced``; a plane with
        no sounding cell: the plain mean)."""
        if self.cfg.recon_weighting == "uniform":
            return 1.0
        sounding = real > 0
        share = sounding.float().mean(dim=(0, 2, 3), keepdim=True)  # (1, C, 1, 1)
        on = torch.where(share > 0, 0.5 / share.clamp_min(1e-12), 0.0)
        off = torch.where(share > 0, 0.5 / (1 - share).clamp_min(1e-12), 1.0)
        return torch.where(sounding, on, off)

    def recon_loss(self, raw: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The reconstruction term of G's raw output against uint8 targets on the device.

        ``bce``: BCE of the onset and frame logits against the 0/1 planes, plus the
        squared error of the velocity head where a note sounds (its mean over those
        cells); ``l1``: mean |sigmoid(output) - target / 127|.
        """
        if self.cfg.recon == "l1":
            real = to_unit(target)
            return ((torch.sigmoid(raw.float()) - real).abs() * self._weights(real)).mean()
        b, _, h, w = raw.shape
        raw = raw.float().view(b, -1, PLANES, h, w)
        real = target_probabilities(target).view(b, -1, PLANES, h, w)
        notes = real[:, :, :VELOCITY].reshape(b, -1, h, w)  # onset, frame planes
        logits = raw[:, :, :VELOCITY].reshape(b, -1, h, w)
        bce = F.binary_cross_entropy_with_logits(logits, notes, reduction="none")
        loss = (bce * self._weights(notes)).mean()
        sounding = real[:, :, FRAME_P] > 0
        if sounding.any():
            error = torch.sigmoid(raw[:, :, VELOCITY]) - real[:, :, VELOCITY]
            loss = loss + error.square()[sounding].mean()
        return loss

    def seen_by_d(self, source_input: torch.Tensor, target: torch.Tensor | None = None,
                  raw: torch.Tensor | None = None) -> torch.Tensor:
        """D's input: G's input with the real target (``target``, uint8) or G's output
        (``raw``) as planes in [0, 1] (for ``bce`` onset and frame probabilities and
        velocity / 127 where notes sound; for ``l1`` velocity / 127)."""
        if target is not None:
            planes = (target_probabilities(target) if self.cfg.recon == "bce"
                      else to_unit(target))
        elif self.cfg.recon == "bce":
            b, _, h, w = raw.shape
            p = torch.sigmoid(raw.float()).view(b, -1, PLANES, h, w)
            notes = p[:, :, :VELOCITY]
            if self.cfg.d_sees == "samples":
                # A roll drawn from G's probabilities, cell by cell, with the gradient
                # of the probabilities passed straight through the draw.
                notes = notes + (torch.bernoulli(notes.detach()) - notes).detach()
            planes = torch.cat([notes, (p[:, :, VELOCITY] * notes[:, :, FRAME_P])
                                .unsqueeze(2)], 2).view(b, -1, h, w)
        else:
            planes = torch.sigmoid(raw.float())
        return self._layout(torch.cat([source_input, planes.to(source_input.dtype)], 1))

    def step(self, source: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """One D update then one G update on a batch of uint8 rolls.

        Returns:
            Detached scalar losses on the device (``loss_d``, ``loss_g_gan`` only with
            D; ``loss_g_recon`` always: the reconstruction term before lambda).
        """
        lo, hi = self.cfg.rows
        x = self.inputs(source)  # (B, Cs [+1], rows, W)
        y = target[..., lo:hi, :].to(self.device, non_blocking=True)  # (B, Ct, rows, W)
        self.pitches[:, lo:hi] |= (target[:, 1::2, lo:hi] > 0).any(dim=-1).any(dim=0)
        losses = {}
        with self.autocast():
            fake = self.g_step(x)  # (B, heads * C, rows, W)
        if self.discriminator is not None:
            self.discriminator.requires_grad_(True)
            self.opt_d.zero_grad(set_to_none=True)
            with self.autocast():
                pred_fake = self.d_step(self.seen_by_d(x, raw=fake.detach()))
                pred_real = self.d_step(self.seen_by_d(x, target=y))
                loss_d = 0.5 * (self.gan_loss(pred_fake, False) + self.gan_loss(pred_real, True))
            self.scaler.scale(loss_d).backward()
            self.scaler.step(self.opt_d)
            self.discriminator.requires_grad_(False)
            losses["loss_d"] = loss_d.detach()
        self.opt_g.zero_grad(set_to_none=True)
        with self.autocast():
            loss_recon = self.recon_loss(fake, y)
            loss_g = self.cfg.lambda_recon * loss_recon
            if self.discriminator is not None:
                loss_gan = self.gan_loss(self.d_plain(self.seen_by_d(x, raw=fake)), True)
                loss_g = loss_g + loss_gan
                losses["loss_g_gan"] = loss_gan.detach()
        self.scaler.scale(loss_g).backward()
        self.scaler.step(self.opt_g)
        self.scaler.update()
        self.sched_g.step()
        if self.sched_d is not None:
            self.sched_d.step()
        if self.ema is not None:
            self._update_ema()
        losses["loss_g_recon"] = loss_recon.detach()
        return losses

    def state_dict(self) -> dict[str, Any]:
        d = self.discriminator
        return {
            "generator": self.generator.state_dict(),
            "discriminator": None if d is None else d.state_dict(),
            "opt_g": self.opt_g.state_dict(), "sched_g": self.sched_g.state_dict(),
            "opt_d": None if d is None else self.opt_d.state_dict(),
            "sched_d": None if d is None else self.sched_d.state_dict(),
            "scaler": self.scaler.state_dict(),
            "ema": None if self.ema is None else self.ema.state_dict(),
            "ema_updates": self.ema_updates,
            "pitches": self.pitches.clone(),
            "pitch_ranges": self.pitch_ranges(),
            "decode": self.decode,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.load_state_dict(state["generator"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.sched_g.load_state_dict(state["sched_g"])
        if self.discriminator is not None:
            self.discriminator.load_state_dict(state["discriminator"])
            self.opt_d.load_state_dict(state["opt_d"])
            self.sched_d.load_state_dict(state["sched_d"])
        if state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        self.ema_updates = int(state["ema_updates"])
        self.pitches = state["pitches"].cpu().bool()
        self.decode = state.get("decode")


# --------------------------------------------------------------------------------------
# The run


def _distributed() -> tuple[int, int, bool]:
    """(rank, world size, whether this call started the process group), starting it
    when torchrun asked for one."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    started = False
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        torch.distributed.init_process_group(backend)
        started = True
    if torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size(), started
    return 0, 1, started


def _gather(obj: Any, world: int) -> list[Any]:
    """Every rank's ``obj``, in rank order (one process: ``[obj]``)."""
    if world == 1:
        return [obj]
    out: list[Any] = [None] * world
    torch.distributed.all_gather_object(out, obj)
    return out


def train(cfg: TrainConfig, *, resume: bool = False,
          progress: Callable[[int, int, dict[str, float]], None] | None = None,
          stop_at: float | None = None) -> dict[str, Any]:
    """Train pix2pix on a dataset, or resume a run; returns a summary.

    Writes, in ``cfg.out`` (rank 0 only): ``config.json``, checkpoints, ``metrics.jsonl``
    (losses, learning rate and samples/s every ``log_every`` steps; valid L1 and frame
    precision / recall / F1 at each evaluation), TensorBoard scalars under ``tb/`` when
    tensorboard is installed, and ``samples/step-NNNNNNNN/`` (PNG and MIDI of valid
    pairs). ``progress(step, total, last_metrics)`` is called after every step.
    ``stop_at`` (a ``time.monotonic()`` time; one process only) ends the run early when
    it passes, as if that step were the last: evaluated, checkpointed, resumable later.

    Raises:
        TrainError: The run folder is in the way, or the resume does not fit.
        LoaderError: The dataset cannot be streamed.
    """
    rank, world, started_group = _distributed()
    if stop_at is not None and world > 1:
        raise TrainError("stop_at is for one process: ranks would stop at different steps")
    device = resolve_device(cfg.device)
    run, resume = prepare_run(cfg, resume)
    writer = rank == 0
    if writer:
        run.mkdir(parents=True, exist_ok=True)

    stream = PairStream(cfg.data, "train", shuffle=True, seed=cfg.seed,
                        transpose=cfg.transpose, shuffle_buffer=cfg.shuffle_buffer,
                        rank=rank, world_size=world)
    loader = PairLoader(stream, cfg.batch_size, num_workers=cfg.num_workers,
                        pin_memory=device.type == "cuda",
                        # Its own generator: making an iterator must not draw from the
                        # global RNG, or a resumed run's dropout would differ.
                        generator=torch.Generator().manual_seed(cfg.seed))
    total = cfg.steps or cfg.epochs * len(loader)
    if not len(loader):
        raise TrainError(f"{cfg.data}: the train split has no samples for this rank")
    torch.manual_seed(cfg.seed)
    model = Pix2Pix(cfg, stream.meta, device, total)
    step = 0
    if resume:
        state = load_checkpoint(run / LAST, map_location=device)
        model.load_state_dict(state)
        step = int(state["step"])
        if len(state["ranks"]) != world:
            raise TrainError(f"{run}: the run had {len(state['ranks'])} ranks, this one "
                             f"{world}")
        loader.load_state_dict(state["ranks"][rank]["loader"])
        if writer:
            for name in ("metrics.jsonl", "pairs.jsonl"):
                truncate_log(run / name, step)
        log.info("resumed %s at step %d of %d", run, step, total)
    elif writer:
        (run / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
    if writer:
        log.info("G %.2f M parameters, D %.2f M; %d steps of %d x %d samples on %s",
                 sum(p.numel() for p in model.generator.parameters()) / 1e6,
                 sum(p.numel() for p in model.discriminator.parameters()) / 1e6
                 if model.discriminator is not None else 0, total, cfg.batch_size, world,
                 device)
    validator = Validator.for_run(cfg, stream.meta, run) if writer else None
    logs = RunLogs(run) if writer else None
    if resume:  # last: nothing above may move the RNG of a resumed run
        set_rng_state(state["ranks"][rank]["rng"])

    started, last = time.perf_counter(), {}
    window_start, window_steps, sums = time.perf_counter(), 0, {}
    epoch = stream.epoch
    final = False
    while step < total and not final:
        loader.set_epoch(epoch)
        yielded = False
        for batch in loader:
            yielded = True
            lr = model.opt_g.param_groups[0]["lr"]  # the rate this step uses
            losses = model.step(batch["source"], batch["target"])
            step += 1
            window_steps += 1
            final = step == total or (stop_at is not None and time.monotonic() >= stop_at)
            for k, v in losses.items():
                sums[k] = sums.get(k, 0) + v
            if cfg.log_pair_ids:
                ids = _gather(batch["pair_id"], world)
                if writer:
                    logs.write("pairs.jsonl", {"step": step, "epoch": epoch, "pair_ids": ids})
            if step % cfg.log_every == 0 or final:
                seconds = time.perf_counter() - window_start
                last = {"step": step, "epoch": epoch,
                        **{k: float(v) / window_steps for k, v in sums.items()},
                        "lr": lr,
                        "samples_per_s": window_steps * cfg.batch_size * world / seconds,
                        "seconds": time.perf_counter() - started}
                if writer:
                    logs.write("metrics.jsonl", last)
                window_start, window_steps, sums = time.perf_counter(), 0, {}
            if writer and validator and ((cfg.eval_every and step % cfg.eval_every == 0)
                                         or final):
                paused = time.perf_counter()
                scores = validator.run(model, step)
                logs.write("metrics.jsonl", {"step": step, "epoch": epoch, **scores})
                last.update(scores)
                window_start += time.perf_counter() - paused  # samples/s counts training
            # After the evaluation: the checkpoint keeps the thresholds it tuned.
            if step % cfg.checkpoint_every == 0 or final:
                ranks = _gather({"loader": loader.state_dict(), "rng": rng_state()}, world)
                if writer:
                    state = {"config": cfg.to_dict(), "meta": asdict(stream.meta),
                             "step": step, "epoch": epoch, "ranks": ranks,
                             **model.state_dict()}
                    save_checkpoint(state, run, step, keep=cfg.keep_checkpoints)
                    save_generator(state, run)
            if progress:
                progress(step, total, last)
            if final:
                break
        else:
            if not yielded and not resume:
                raise TrainError(f"{cfg.data}: an epoch of the train split gave no batch")
            epoch += 1
            resume = False
    if logs:
        logs.close()
    if world > 1:
        # Every rank leaves together, once rank 0 has written the last checkpoint: a rank
        # whose process ends with the group still open can abort (gloo's threads).
        torch.distributed.barrier()
        if started_group:
            torch.distributed.destroy_process_group()
    return {"out": str(run), "step": step, "total_steps": total, "epoch": epoch,
            "seconds": time.perf_counter() - started, **last}


__all__ = ["Pix2Pix", "TrainError", "train"]
