"""Checkpoints of a training run: written atomically, read with ``weights_only=True``.

A checkpoint is a dict of tensors, numbers, strings, lists and dicts only (nothing
pickled as code): the run's config and the dataset's shard metadata (to rebuild the
networks), the step and epoch, the state dicts of G, D, their optimizers and
schedulers and the AMP scaler, and per rank the loader state and RNG states.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from musicpairs.config import TrainConfig
from musicpairs.errors import MusicpairsError
from musicpairs.model.patchgan import PatchGAN
from musicpairs.model.rolls import head_planes, input_planes
from musicpairs.model.unet import UNet, max_depth
from musicpairs.shards import ShardMeta

FORMAT = "musicpairs-pix2pix"
#: 2: G reads [0, 1] rolls (and the harmony plane) and gives raw heads (see ``rolls``).
VERSION = 2
LAST = "last.pt"
#: The generator alone, in fp16, with what decoding needs: what ``evaluate`` and
#: ``convert`` read (a fraction of a step checkpoint's size; it cannot resume a run).
EXPORT = "generator.pt"


class CheckpointError(MusicpairsError):
    """A checkpoint cannot be read or does not fit (not ours, damaged, another shape)."""


def generator_for(cfg: TrainConfig, meta: ShardMeta) -> UNet:
    """The U-Net for a dataset's shapes and the run's pitch rows: source planes (and the
    harmony plane) in, the reconstruction's heads per target channel out."""
    cs, _, width = meta.source_shape
    lo, hi = cfg.rows
    depth = cfg.depth or max_depth(hi - lo, width)
    channels = meta.target_shape[0] // 2
    return UNet(input_planes(cs, cfg.harmony), head_planes(cfg.recon) * channels,
                ngf=cfg.ngf, depth=depth, norm=cfg.norm, dropout=cfg.dropout,
                max_filters=cfg.max_filters)


def discriminator_for(cfg: TrainConfig, meta: ShardMeta) -> PatchGAN:
    """The PatchGAN for a dataset's shapes: it sees G's input and a target (real, or G's
    output in [0, 1]) together."""
    channels = meta.target_shape[0] // 2
    return PatchGAN(input_planes(meta.source_shape[0], cfg.harmony)
                    + head_planes(cfg.recon) * channels, ndf=cfg.ndf,
                    n_layers=cfg.n_layers, norm=cfg.norm)


def rng_state() -> dict[str, Any]:
    """This process's torch (CPU and CUDA), numpy and Python RNG states, in types that
    load with ``weights_only=True``."""
    # The legacy global state: user code (augmentations) may draw from it.
    kind, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
            "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
            "python": random.getstate()}


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what ``rng_state()`` saved, from a checkpoint loaded onto any device (the
    generators take their states as CPU tensors)."""
    torch.set_rng_state(state["torch"].cpu())
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.cpu().numpy().astype(np.uint32), pos, has_gauss,  # noqa: NPY002
                         cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def save_checkpoint(state: dict[str, Any], run: str | os.PathLike, step: int, *,
                    keep: int = 0) -> Path:
    """Write ``step-NNNNNNNN.pt`` and point ``last.pt`` at it; keep the newest ``keep``.

    Both names appear by rename only, so a crash never leaves a partial file under
    either. ``last.pt`` is a hard link to the step file where the filesystem has them
    (no second copy on disk), else a copy.
    """
    run = Path(run)
    path = run / f"step-{step:08d}.pt"
    tmp = run / f".{path.name}.tmp"
    with tmp.open("wb") as f:
        torch.save({"format": FORMAT, "version": VERSION, **state}, f)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
    last_tmp = run / f".{LAST}.tmp"
    last_tmp.unlink(missing_ok=True)
    try:
        os.link(path, last_tmp)
    except OSError:
        shutil.copyfile(path, last_tmp)
    last_tmp.replace(run / LAST)
    if keep:
        for old in sorted(run.glob("step-*.pt"))[:-keep]:
            old.unlink()
    return path


def save_generator(state: dict[str, Any], run: str | os.PathLike) -> Path:
    """Write ``RUN/generator.pt`` from a checkpoint's state: config, metadata, step,
    decoding settings and the generator's weights (the moving average's when the run
    keeps one) as fp16 (buffers kept as they are), atomically."""
    run = Path(run)
    weights = {k: v.half() if v.is_floating_point() else v
               for k, v in (state.get("ema") or state["generator"]).items()}
    export = {"format": FORMAT, "version": VERSION, "kind": "generator",
              **{k: state[k] for k in ("config", "meta", "step", "decode", "pitch_ranges")
                 if k in state},
              "generator": weights}
    tmp = run / f".{EXPORT}.tmp"
    with tmp.open("wb") as f:
        torch.save(export, f)
    tmp.replace(run / EXPORT)
    return run / EXPORT


def generator_weights(state: dict[str, Any]) -> dict[str, torch.Tensor]:
    """G's weights from a checkpoint, an export or a packed export (:func:`pack_generator`:
    its int8 tensors times their scales, each kernel's dropped taps back as zeros)."""
    weights = dict(state.get("ema") or state["generator"])
    scales = state.get("int8_scales", {})
    taps = state.get("int8_taps", {})
    for name, q in state.get("int8", {}).items():
        scale = scales[name].float().view(-1, *([1] * (q.dim() - 1)))
        w = q.float() * scale
        if name in taps:
            h0, h1, w0, w1, kh, kw = taps[name]
            full = torch.zeros(*w.shape[:-2], kh, kw)
            full[..., h0:h1, w0:w1] = w
            w = full
        weights[name] = w
    return weights


def pack_generator(source: str | os.PathLike, out: str | os.PathLike, *,
                   min_size: int = 4096, tune_on: str | None = None) -> dict[str, Any]:
    """Write a generator small enough to ship: the export of ``source`` (a run's
    ``generator.pt``, ``last.pt`` or ``step-*.pt``) with every weight of ``min_size`` or
    more values stored as int8, one scale (fp16) per slice of its first dimension, and
    the rest as fp16; config, metadata, pitch ranges and decoding settings as they were.
    Kernel taps that never meet a real cell at the model's input size
    (:meth:`~musicpairs.model.unet.UNet.live_taps`: a tenth of the weights of a U-Net on
    all 128 pitch rows) are left out, and read back as zeros: G gives the same output.
    Read back with :func:`load_generator` (``weights_only=True``, like every checkpoint).
    With ``tune_on`` (a dataset of the same task and shapes), the decoding settings are
    tuned again on its valid split, on the packed weights, and stored instead.

    Returns:
        ``bytes`` written, ``values`` quantized and their largest ``max_error`` (absolute,
        against the fp32 weights).
    """
    generator, meta, cfg, state = load_generator(source)  # the weights fit, or it raises
    lo, hi = cfg.rows
    live = generator.live_taps(hi - lo, meta.source_shape[-1])
    kept, packed, scales, taps = {}, {}, {}, {}
    worst = 0.0
    for name, w in generator_weights(state).items():
        if not w.is_floating_point() or w.numel() < min_size or w.dim() < 2:
            kept[name] = w.half() if w.is_floating_point() else w
            continue
        w = w.float()
        if name in live:
            h0, h1, w0, w1 = live[name]
            taps[name] = [h0, h1, w0, w1, *w.shape[-2:]]
            w = w[..., h0:h1, w0:w1]
        peak = w.abs().flatten(1).amax(dim=1)  # per slice of dim 0
        scale = torch.where(peak > 0, peak / 127, torch.ones_like(peak)).half().float()
        q = torch.round(w / scale.view(-1, *([1] * (w.dim() - 1)))).clamp(-127, 127)
        packed[name], scales[name] = q.to(torch.int8), scale.half()
        error = (q * scale.view(-1, *([1] * (w.dim() - 1))) - w).abs().max()
        worst = max(worst, float(error))
    export = {"format": FORMAT, "version": VERSION, "kind": "generator",
              **{k: state[k] for k in ("config", "meta", "step", "decode", "pitch_ranges")
                 if k in state},
              "generator": kept, "int8": packed, "int8_scales": scales, "int8_taps": taps}
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp")
    with tmp.open("wb") as f:
        torch.save(export, f)
    if tune_on is not None:
        from musicpairs.model.evaluate import Generator

        try:
            model = Generator(tmp)
            model.path = Path(source)  # what errors name
            model.tune(tune_on)
        finally:
            tmp.unlink()
        export["decode"] = model.decode
        with tmp.open("wb") as f:
            torch.save(export, f)
    tmp.replace(out)
    return {"bytes": out.stat().st_size,
            "values": int(sum(q.numel() for q in packed.values())), "max_error": worst}


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict[str, Any]:
    """A checkpoint written by :func:`save_checkpoint`, read with ``weights_only=True``.

    Raises:
        CheckpointError: Missing, not a torch file, damaged, or not a musicpairs
            pix2pix checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises many kinds for a damaged or foreign file
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else ''})") from e
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a musicpairs pix2pix checkpoint")
    if state.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {state.get('version')}, this "
                              f"musicpairs reads {VERSION} (train it again with this version)")
    return state


def load_generator(path: str | os.PathLike, device: str | torch.device = "cpu"
                   ) -> tuple[UNet, ShardMeta, TrainConfig, dict[str, Any]]:
    """The generator of a checkpoint (its moving average when the run keeps one), in
    eval mode, with the dataset's metadata, the run's config and the whole checkpoint."""
    state = load_checkpoint(path)
    try:
        cfg = TrainConfig.from_dict(state["config"])
        meta = ShardMeta.from_json(json.dumps(state["meta"]))
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: damaged config or metadata ({e})") from e
    check_task(meta, str(path))
    generator = generator_for(cfg, meta)
    try:
        # An export's fp16 (and a packed one's int8) -> fp32; a step checkpoint's moving
        # average when it has one.
        generator.load_state_dict(generator_weights(state))
    except (KeyError, RuntimeError) as e:
        # torch lists every mismatched tensor; the first line says what is wrong.
        first = str(e).strip().splitlines()
        raise CheckpointError(f"{path}: the generator weights do not fit its config and "
                              f"shapes ({first[-1].strip() if first else e})") from e
    return generator.to(device).eval(), meta, cfg, state


def check_task(meta: ShardMeta, label: str) -> None:
    """Raise CheckpointError unless ``meta`` is a task this musicpairs knows, with the
    channels and shapes that task has."""
    from musicpairs.pairing import CHANNELS

    if meta.task not in CHANNELS:
        raise CheckpointError(f"{label}: task {meta.task!r} is not one of "
                              f"{', '.join(CHANNELS)}")
    source, target = CHANNELS[meta.task]
    expected = (2 * len(source), 2 * len(target), tuple(source), tuple(target))
    got = (meta.source_shape[0], meta.target_shape[0], tuple(meta.source_channels),
           tuple(meta.target_channels))
    if got != expected or meta.source_shape[1:] != meta.target_shape[1:] \
            or meta.source_shape[1] != 128:
        raise CheckpointError(
            f"{label}: shapes {list(meta.source_shape)} -> {list(meta.target_shape)} with "
            f"channels {list(meta.source_channels)} -> {list(meta.target_channels)} do not "
            f"fit task {meta.task} ({list(source)} -> {list(target)}, 128 pitches)")
