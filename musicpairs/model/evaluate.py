"""``evaluate``: a trained generator against baselines on a split of a dataset.

Every system's output is decoded to notes (valid planes, as the data contract makes
them) and scored by the same :class:`~musicpairs.model.metrics.ScoreSheet` against the
real targets:

* the model: G in eval mode, decoded with the thresholds tuned on the valid split and
  stored with the checkpoint (tuned now on the valid split when the checkpoint has none);
* ``--compare`` checkpoints (e.g. the L1-only ablation), each with its own thresholds;
* ``empty``: no notes at all;
* ``copy``: for melody tasks the melody an octave down, in the first pitched target
  channel; for version2version the source itself;
* ``retrieval``: the target of the train pair whose source is nearest (cosine of
  pitch-class-per-beat profiles) among the first ``retrieval_pool`` train pairs of a
  seeded shuffle;
* ``real``: the real targets scored against themselves, the reference for the MuseGAN
  metrics and the histograms.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from musicpairs.errors import MusicpairsError
from musicpairs.loader import PairStream
from musicpairs.model.checkpoint import load_generator
from musicpairs.model.metrics import ScoreSheet, bar_chroma
from musicpairs.model.rolls import (
    PLANES,
    all_rows,
    decode_probabilities,
    decode_transpositions,
    model_input,
    pitched_planes,
    probabilities,
    transposed_mean,
)
from musicpairs.model.validate import Validator, valid_stream
from musicpairs.roll import FRAME
from musicpairs.shards import ShardMeta

log = logging.getLogger(__name__)

BASELINES = ("empty", "copy", "retrieval")


class EvaluateError(MusicpairsError):
    """An evaluation cannot run as asked (a checkpoint and a dataset that do not fit)."""


class Generator:
    """A checkpoint's generator ready to convert rolls: G in eval mode on a device, the
    dataset metadata it was trained on and its decoding thresholds."""

    def __init__(self, path: str | os.PathLike, device: str | torch.device = "cpu"):
        self.path = Path(path)
        self.generator, self.meta, self.cfg, state = load_generator(path, device)
        self.device = next(self.generator.parameters()).device
        #: Decoding settings (see Validator); None until tuned.
        self.decode: dict[str, Any] | None = state.get("decode")
        self.step = int(state.get("step", 0))
        channels = self.meta.target_shape[0] // 2
        self._pitch_ranges = state.get("pitch_ranges") or [None] * channels

    @property
    def inference_generator(self) -> torch.nn.Module:
        return self.generator

    def pitch_ranges(self) -> list[list[int] | None]:
        """Per target channel, the pitch range the training targets used."""
        return self._pitch_ranges

    def tune(self, data: str, samples: int = 512, batch_size: int = 16) -> None:
        """Tune the decoding settings on ``data``'s valid split now."""
        stream = valid_stream(data, batch_size)
        if stream is None:
            raise EvaluateError(f"{self.path}: the checkpoint has no decoding thresholds and "
                                f"{data} has no valid split to tune them on")
        Validator(stream, self.meta, None, samples=samples).run(self, self.step)

    @torch.no_grad()
    def probabilities(self, source: torch.Tensor,
                      transpositions: int | None = None) -> torch.Tensor:
        """uint8 sources (B, Cs, 128, W) -> onset, frame and velocity planes per target
        channel (B, 3C, 128, W), in [0, 1]: G's, averaged over ``transpositions``
        semitones each way (:func:`~musicpairs.model.rolls.transposed_mean`; None: as
        many as the decoding settings were tuned with)."""
        if transpositions is None:
            transpositions = decode_transpositions(self.decode)

        def predict(x: torch.Tensor) -> torch.Tensor:
            raw = self.generator(model_input(x, self.cfg.harmony, self.cfg.rows))
            return all_rows(probabilities(raw, self.cfg.recon), self.cfg.rows)

        return transposed_mean(predict, source.to(self.device), transpositions,
                               pitched_planes(self.meta.source_channels, 2),
                               pitched_planes(self.meta.target_channels, PLANES))

    def convert(self, source: np.ndarray) -> np.ndarray:
        """uint8 sources (B, Cs, 128, W) -> decoded uint8 target planes (B, Ct, 128, W)."""
        probs = self.probabilities(torch.from_numpy(source)).cpu().numpy()
        return decode_probabilities(probs, self.decode)


@dataclass
class _System:
    name: str
    kind: str  # model, baseline or reference
    description: str
    sheet: ScoreSheet
    produce: Callable[[np.ndarray, np.ndarray, int], np.ndarray]
    extra: dict[str, Any] = field(default_factory=dict)


def check_fits(meta: ShardMeta, data_meta: ShardMeta, label: str, data: str) -> None:
    """Raise EvaluateError unless a checkpoint's dataset and ``data`` hold the same
    kind of pairs (task, grid, shapes and channels)."""
    keys = ("task", "steps_per_beat", "source_shape", "target_shape", "source_channels",
            "target_channels")
    ours = {k: getattr(meta, k) for k in keys}
    theirs = {k: getattr(data_meta, k) for k in keys}
    if ours != theirs:
        differ = [k for k in keys if ours[k] != theirs[k]]
        raise EvaluateError(f"{label} was trained on other pairs than {data} holds: " + "; ".join(
            f"{k} {_show(ours[k])} vs {_show(theirs[k])}" for k in differ))


def _show(value) -> str:
    return str(list(value)) if isinstance(value, tuple) else str(value)


def copy_baseline(meta: ShardMeta, source: np.ndarray) -> np.ndarray:
    """The copy baseline's target for uint8 sources (B, Cs, 128, W): for melody tasks the
    melody an octave down (notes that would fall below pitch 0 are dropped) in the first
    target channel that is not drums; for version2version the source itself."""
    if meta.task == "version2version":
        return source.copy()
    out = np.zeros((len(source), *meta.target_shape), np.uint8)
    c = next(i for i, name in enumerate(meta.target_channels) if name != "drums")
    out[:, 2 * c : 2 * c + 2, :-12] = source[:, 0:2, 12:]
    return out


def pitch_class_profiles(source: np.ndarray, steps_per_beat: int) -> np.ndarray:
    """Retrieval features: sounding steps per pitch class and beat of all source channels,
    L2-normalised. (B, Cs, 128, W) uint8 -> float32 (B, beats * 12)."""
    frames = (source[:, FRAME::2] > 0).any(1)  # (B, 128, W)
    profile = bar_chroma(frames, steps_per_beat).reshape(len(source), -1).astype(np.float32)
    norm = np.linalg.norm(profile, axis=1, keepdims=True)
    return profile / np.where(norm > 0, norm, 1)


class Retrieval:
    """The retrieval baseline: for each query source, the target of the nearest train
    source. Streams the pool twice (nearest, then the chosen targets); holds only the
    queries' features and the chosen targets."""

    def __init__(self, data: str, meta: ShardMeta, pool: int, batch_size: int):
        self.data, self.meta, self.pool, self.batch_size = data, meta, pool, batch_size
        self.targets: dict[int, np.ndarray] = {}
        self.nearest = np.zeros(0, np.int64)
        self.similarity = np.zeros(0, np.float32)
        self.pool_size = 0

    def _pool(self):
        stream = PairStream(self.data, "train", shuffle=True, seed=0, rank=0, world_size=1,
                            batch_size=self.batch_size)
        seen = 0
        for batch in stream:
            n = min(len(batch["pair_id"]), self.pool - seen)
            yield seen, batch["source"][:n].numpy(), batch["target"][:n]
            seen += n
            if seen >= self.pool:
                break

    def fit(self, queries: np.ndarray) -> None:
        """Find the nearest pool source of each query (rows of
        :func:`pitch_class_profiles`)."""
        spb = self.meta.steps_per_beat
        best = np.full(len(queries), -np.inf, np.float32)
        nearest = np.zeros(len(queries), np.int64)
        rows = np.arange(len(queries))
        for offset, source, _ in self._pool():
            sim = queries @ pitch_class_profiles(source, spb).T  # (queries, batch)
            k = sim.argmax(1)
            better = sim[rows, k] > best
            best[better] = sim[better, k[better]]
            nearest[better] = offset + k[better]
            self.pool_size = offset + len(source)
        wanted = np.unique(nearest)
        for offset, _, target in self._pool():
            for i in np.flatnonzero(np.isin(offset + np.arange(len(target)), wanted)).tolist():
                self.targets[offset + i] = target[i].numpy()
        self.nearest, self.similarity = nearest, best

    def __call__(self, first: int, count: int) -> np.ndarray:
        """The retrieved targets of queries ``first .. first + count - 1``."""
        return np.stack([self.targets[int(k)] for k in self.nearest[first : first + count]])


def _source_profiles(stream: PairStream, samples: int) -> np.ndarray:
    """Retrieval features of the first ``samples`` sources of a split (the sources
    themselves are not kept)."""
    parts, seen = [], 0
    for batch in stream:
        n = min(len(batch["pair_id"]), samples - seen)
        parts.append(pitch_class_profiles(batch["source"][:n].numpy(),
                                          stream.meta.steps_per_beat))
        seen += n
        if seen >= samples:
            break
    return np.concatenate(parts)


def evaluate(checkpoint: str | os.PathLike, data: str, *, split: str = "test",
             compare: tuple[str | os.PathLike, ...] = (),
             baselines: tuple[str, ...] = BASELINES, samples: int | None = None,
             batch_size: int = 16, device: str = "auto", retrieval_pool: int = 50_000,
             tune: bool = False, tune_samples: int = 512, examples: int = 4,
             out: str | os.PathLike | None = None, report: bool = False,
             soundfont: str | os.PathLike | None = None) -> dict[str, Any]:
    """Score a checkpoint, ``compare`` checkpoints and baselines on a split.

    Args:
        checkpoint: The model (``last.pt`` or a ``step-*.pt`` of a run).
        data: The dataset (folder or fsspec URL).
        split: The split scored.
        compare: More checkpoints scored in the same run.
        baselines: Any of ``BASELINES``.
        samples: Score only the first N pairs of the split (file order); all by default.
        retrieval_pool: Train pairs the retrieval baseline searches.
        tune: Tune every checkpoint's decoding thresholds on the valid split now, instead
            of using those stored with it (a checkpoint without them is always tuned).
        tune_samples: Valid pairs to tune thresholds on.
        examples: Pairs drawn in ``examples.png`` (with ``out``) and in the report.
        out: Folder for ``metrics.json`` and ``examples.png``; nothing written if None.
        report: Also write ``report.html`` in ``out`` (:mod:`musicpairs.model.report`):
            the scores, the examples' rolls with audio players, the run's curves. With
            no SoundFont it is written without audio, and ``report_audio_error`` says
            why.
        soundfont: The SoundFont for the report's audio (default: found as
            :func:`musicpairs.audio.find_soundfont` finds it).

    Returns:
        ``{"task", "data", "split", "windows", "systems": {name: {"kind",
        "description", "overall", "channels", ...}}, "files": {...}}``.

    Raises:
        EvaluateError, CheckpointError, LoaderError: Nothing to score, or inputs that do
            not fit together.
    """
    from musicpairs.model.train import resolve_device

    unknown = set(baselines) - set(BASELINES)
    if unknown:
        raise EvaluateError(f"unknown baseline {sorted(unknown)[0]!r} (choose from "
                            f"{', '.join(BASELINES)})")
    target_device = resolve_device(device)
    stream = PairStream(data, split, shuffle=False, rank=0, world_size=1,
                        batch_size=batch_size)
    meta = stream.meta
    samples = min(samples or stream.num_samples, stream.num_samples)
    channels, spb = meta.target_channels, meta.steps_per_beat

    def sheet() -> ScoreSheet:
        return ScoreSheet(channels, spb)

    models = [Generator(path, target_device) for path in (checkpoint, *compare)]
    systems: list[_System] = []
    names: set[str] = set()
    for model in models:
        check_fits(model.meta, meta, str(model.path), data)
        tuned_now = tune or model.decode is None
        if tuned_now:
            if model.decode is None:
                log.warning("%s has no decoding thresholds: tuning them on the valid split "
                            "now", model.path)
            model.tune(data, tune_samples, batch_size)
        name = _unique(_model_name(model.path), names)
        systems.append(_System(
            name, "model", f"{model.cfg.loss} ({model.path}, step {model.step})", sheet(),
            lambda source, _, first, m=model: m.convert(source),
            {"checkpoint": str(model.path), "loss": model.cfg.loss, "step": model.step,
             "thresholds": model.decode, "thresholds_tuned_now": tuned_now}))
    retrieval = None
    if "retrieval" in baselines:
        retrieval = Retrieval(data, meta, retrieval_pool, batch_size)
        retrieval.fit(_source_profiles(stream, samples))
    for baseline in baselines:
        if baseline == "empty":
            systems.append(_System("empty", "baseline", "no notes", sheet(),
                                   lambda source, _, first: np.zeros(
                                       (len(source), *meta.target_shape), np.uint8)))
        elif baseline == "copy":
            what = ("the source itself" if meta.task == "version2version"
                    else "the melody an octave down")
            systems.append(_System("copy", "baseline", what, sheet(),
                                   lambda source, _, first: copy_baseline(meta, source)))
        else:
            systems.append(_System(
                "retrieval", "baseline", f"nearest of {retrieval.pool_size} train sources",
                sheet(), lambda source, _, first: retrieval(first, len(source)),
                {"pool": retrieval.pool_size,
                 "mean_similarity": float(retrieval.similarity.mean())}))
    real = _System("real", "reference", "the real targets", sheet(),
                   lambda source, target, first: target)

    shown: list[dict[str, np.ndarray]] = []
    seen = 0
    for batch in stream:
        n = min(len(batch["pair_id"]), samples - seen)
        source = batch["source"][:n].numpy()
        target = batch["target"][:n].numpy()
        melody = source[:, 0:2]
        outputs = {}
        for system in (real, *systems):
            outputs[system.name] = system.produce(source, target, seen)
            system.sheet.add(outputs[system.name], target, melody)
        shown += [{"pair_id": batch["pair_id"][i], "source": source[i],
                   **{k: v[i] for k, v in outputs.items()}}
                  for i in range(min(n, examples - len(shown)))]
        seen += n
        if seen >= samples:
            break
    if not seen:
        raise EvaluateError(f"{data}: split {split!r} has no pairs to score")

    result: dict[str, Any] = {"task": meta.task, "data": str(data), "split": split,
                              "windows": seen, "systems": {}, "files": {}}
    for system in (*systems, real):
        scores = system.sheet.result(reference=real.sheet)
        result["systems"][system.name] = {"kind": system.kind,
                                          "description": system.description,
                                          **system.extra, **scores}
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        if shown:
            result["files"]["examples"] = str(render_examples(
                meta, shown, [s.name for s in systems], out / "examples.png"))
        if report:
            from musicpairs.model.report import write_report

            written = write_report(result, meta, shown, [s.name for s in systems],
                                   out / "report.html", soundfont=soundfont,
                                   run=Path(checkpoint).parent)
            result["files"]["report"] = written["report"]
            result["report_audio_error"] = written["audio_error"]
        result["files"]["metrics"] = str(out / "metrics.json")
        (out / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def _model_name(path: Path) -> str:
    """A row label: the run folder's name, with the file's stem unless it is last.pt or
    the run's weights-only export."""
    run = path.parent.name or "model"
    return run if path.name in ("last.pt", "generator.pt") else f"{run}/{path.stem}"


def _unique(name: str, taken: set[str]) -> str:
    candidate, k = name, 2
    while candidate in taken or candidate in (*BASELINES, "real"):
        candidate, k = f"{name}#{k}", k + 1
    taken.add(candidate)
    return candidate


# --------------------------------------------------------------------------------------
# Reports


def format_report(result: dict[str, Any]) -> str:
    """The scores as plain-text tables: frame and onset scores of every system, then the
    MuseGAN metrics per target channel with the real targets as the reference."""
    systems = result["systems"]
    lines = [f"{result['task']}: {result['windows']} windows of the {result['split']} split "
             f"of {result['data']}", ""]
    for name, s in systems.items():
        if s["kind"] == "model":
            how = ("tuned now on the valid split" if s["thresholds_tuned_now"]
                   else f"from the checkpoint (valid, step {s['thresholds']['step']})")
            k = decode_transpositions(s["thresholds"])
            mean = f"G averaged over the source transposed -{k}..{k} semitones; " if k else ""
            lines.append(f"{name}: {s['description']}; decoding {how}: {mean}" + ", ".join(
                describe_decoding(c, t) for c, t in
                zip(next(iter(systems.values()))["channels"], s["thresholds"]["channels"],
                    strict=True)))
    lines.append("")
    columns = [("frame P", "frame_precision"), ("frame R", "frame_recall"),
               ("frame F1", "frame_f1"), ("Bay acc", "frame_accuracy"),
               ("onset F1", "onset_f1"), ("poly TV", "polyphony_tv"),
               ("length TV", "note_length_tv")]
    rows = [[name] + [_number(s["overall"].get(key)) for _, key in columns]
            for name, s in systems.items() if s["kind"] != "reference"]
    lines += _table(["system"] + [c for c, _ in columns], rows)
    muse = [("notes", "notes"), ("EB", "empty_bars"), ("UPC", "pitch_classes_per_bar"),
            ("QN", "qualified_notes"), ("TD", "tonal_distance"), ("pitches", "pitch_range")]
    for channel in next(iter(systems.values()))["channels"]:
        lines.append("")
        rows = [[name] + [_cell(s["channels"][channel][key]) for _, key in muse]
                for name, s in systems.items()]
        lines += _table([channel] + [c for c, _ in muse], rows)
    lines += ["", "frame/onset: precision, recall, F1 (onsets of the same pitch within 1 "
              "step); Bay acc = TP / (TP + FP + FN);",
              "poly/length TV: total variation distance of the polyphony / note-length "
              "histograms to the real targets' (0 = the same);",
              "notes: notes decoded; EB empty-bar rate, UPC pitch classes per bar, QN "
              "qualified-note rate, TD tonal distance to the melody (MuseGAN); pitches: the "
              "lowest and highest; real = the targets."]
    files = result.get("files") or {}
    if files:
        lines.append("")
        lines += [f"{k}: {v}" for k, v in files.items()]
    return "\n".join(lines)


def describe_decoding(channel: str, t: dict[str, Any]) -> str:
    """One channel's decoding settings in words."""
    where = t.get("pitch_range")
    voices, restrike = t.get("max_voices"), t.get("restrike_threshold")
    return (f"{channel} onset >= {t['onset_threshold']:g}, frame >= {t['frame_threshold']:g}"
            + (f", restrike >= {restrike:g}" if restrike is not None else "")
            + f", notes >= {t['min_steps']} steps"
            + (f", at most {voices} at once" if voices else "")
            + (f", pitches {where[0]}-{where[1]}" if where else ""))


def _number(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def _cell(value) -> str:
    if isinstance(value, list):
        return f"{value[0]}-{value[1]}"
    if isinstance(value, int):
        return str(value)
    return _number(value)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    out = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w)
                     for i, (h, w) in enumerate(zip(header, widths, strict=True)))]
    out += ["  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                      for i, (c, w) in enumerate(zip(r, widths, strict=True))) for r in rows]
    return out


def render_examples(meta: ShardMeta, shown: list[dict[str, Any]], systems: list[str],
                    out: str | os.PathLike, *, dpi: int = 100) -> Path:
    """A PNG grid: one column per example pair, one row each for the source, the real
    target and every system (target channels drawn together, shaded by velocity)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from musicpairs.render import _pitch_range, pitch_name

    rows = ["source", "real", *systems]
    width = meta.source_shape[-1]
    fig = Figure(figsize=(3.2 * len(shown) + 1, 1.3 * len(rows) + 0.6), dpi=dpi)
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(rows), len(shown), squeeze=False, sharex=True)
    for col, example in enumerate(shown):
        frames = {name: example[name][FRAME::2].max(0) for name in rows}
        lo, hi = _pitch_range(np.stack([frames["source"], frames["real"]]), span=36)
        for r, name in enumerate(rows):
            ax = axes[r, col]
            ax.imshow(np.ma.masked_equal(frames[name][lo : hi + 1].astype(float), 0),
                      origin="lower", aspect="auto", cmap="viridis", vmin=0, vmax=127,
                      interpolation="nearest", extent=(-0.5, width - 0.5, lo - 0.5, hi + 0.5))
            for bar in range(0, width, 4 * meta.steps_per_beat):
                ax.axvline(bar - 0.5, color="#bbb", lw=0.5, zorder=0)
            cs = [p for p in range(lo, hi + 1) if p % 24 == 0]
            ax.set_yticks(cs, [pitch_name(p) for p in cs], fontsize=6)
            ax.set_xticks([])
            if col == 0:
                ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
            if r == 0:
                ax.set_title(str(example["pair_id"]), fontsize=7)
    fig.suptitle(f"{meta.task}: source, real target and each system's output "
                 "(time across; a window starts on a downbeat)", fontsize=9)
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, format="png")
    return out
