"""Frozen configuration dataclasses, read from TOML-like dicts and written as JSON."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


class _DictConfig:
    """``to_dict`` / ``from_dict`` for the frozen config dataclasses below."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown {cls.__name__} keys: {sorted(unknown)}")
        return cls(**data)


@dataclass(frozen=True)
class RollSpec(_DictConfig):
    """How a score is laid on the beat grid.

    Attributes:
        steps_per_beat: Grid steps per quarter note (4 = sixteenths).
        max_steps: Longest song accepted, in steps. A file asking for more (a stray
            event hours after the music, a hostile file) is refused with a
            ``MidiReadError`` instead of allocating gigabytes. The default, 2**17 steps,
            is 32,768 beats: over four hours at 120 bpm.
        max_roll_bytes: Largest roll accepted (tracks x 2 x 128 x T bytes); a file with
            thousands of tracks is refused rather than taking a worker's memory.
    """

    steps_per_beat: int = 4
    max_steps: int = 1 << 17
    max_roll_bytes: int = 1 << 29

    def __post_init__(self):
        if not isinstance(self.steps_per_beat, int) or self.steps_per_beat < 1:
            raise ValueError(f"steps_per_beat must be a positive int, got {self.steps_per_beat!r}")
        for name in ("max_steps", "max_roll_bytes"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")


#: Options of a run that may change when it is resumed (how long, how often, where).
RESUMABLE_CHANGES = frozenset({"epochs", "steps", "checkpoint_every", "keep_checkpoints",
                               "eval_every", "log_every", "device", "amp", "compile"})


@dataclass(frozen=True)
class TrainConfig(_DictConfig):
    """A pix2pix training run; written to ``RUN/config.json`` and into every checkpoint.

    Attributes:
        data: The dataset folder (or fsspec URL) built by ``musicpairs build``.
        out: The run folder.
        epochs, steps: How long: ``steps`` (optimizer steps) when given, else ``epochs``
            passes over the train split.
        batch_size: Samples per step on each rank.
        device: ``auto`` (CUDA when present), ``cpu``, ``cuda`` or ``cuda:N``.
        amp: ``auto`` (bf16 on a CUDA device that has it, else off), ``bf16``, ``fp16``
            (with a gradient scaler) or ``off``.
        compile: ``torch.compile`` the networks.
        num_workers: DataLoader worker processes per rank.
        ngf, ndf: Filters of the generator's and the discriminator's first layer.
        max_filters: The most filters of any U-Net level (None: ``8 * ngf``, as pix2pix).
        depth: U-Net levels (None: as many as the roll's pitch axis allows, at most 8).
        n_layers: PatchGAN stride-2 layers (3: 70x70 patches).
        norm: ``batch`` or ``instance``.
        dropout: U-Net inner decoder dropout.
        loss: ``gan`` (L_cGAN + lambda * reconstruction) or ``recon`` (the
            reconstruction-only ablation: no D).
        gan_mode: ``bce`` (BCE with logits, pix2pix's ``vanilla``) or ``lsgan``.
        recon: The reconstruction term. ``bce``: G has three heads per target channel,
            onset and frame logits trained with binary cross-entropy and a velocity
            regressed (squared error) where notes sound; ``l1``: pix2pix's plain L1
            between G's output (through a sigmoid) and the target planes as velocity /
            127.
        lambda_recon: Weight of the reconstruction term.
        recon_weighting: ``balanced`` (default): in each target plane of a batch,
            sounding and silent cells carry half of the term each; ``uniform``: the
            plain mean over cells. Rolls are ~98 % silence: under the plain L1 mean G
            settles on silence everywhere and stays there (musicpairs' own test of 8
            pairs never leaves it), and under the plain BCE it learns the notes slowly
            and stays unsure of them (on the Bach quickstart, valid frame F1 0.34
            against 0.43 balanced after 800 steps).
        d_sees: What D sees of G's onset and frame probabilities (``bce``):
            ``samples``, a roll drawn from them cell by cell (0 or 1, as a real roll; the
            gradient passes straight through the draw), or the ``probabilities``
            themselves (which no real roll has: D tells them apart at once).
        harmony: Give G one more input plane: the source's pitch classes at each step,
            folded across octaves and laid on every octave.
        pitch_rows: ``LO:HI``, the pitches G and D work on (LO included, HI not; the
            harmony plane still folds every source pitch). Notes outside are neither
            learned nor generated; a range of 64 rows halves a step's work against
            all 128. G takes as many levels as its length allows (with ``depth``
            given, it must be a multiple of ``2**depth``).
        ema: Decay of the exponential moving average of G's weights that is evaluated,
            exported and converted with (0: none; the decay is ``min(ema, (1 + step) /
            (10 + step))``, so a short run is not dominated by its first weights).
        lr, beta1, beta2: Adam, for G and D alike.
        decay_start: Fraction of the run after which the learning rate decays linearly
            to 0 (1.0: constant).
        transpose: Random transposition of training pairs, in semitones (PairStream).
        shuffle_buffer: PairStream shuffle block.
        checkpoint_every: Steps between checkpoints (``step-NNNNNNNN.pt``; ``last.pt``
            always names the newest).
        keep_checkpoints: Step checkpoints kept (the newest; 0 keeps all).
        eval_every: Steps between evaluations on the valid split (0: only at the end).
        eval_samples: Valid samples scored at each evaluation.
        sample_count: Valid pairs written as PNG and MIDI at each evaluation.
        log_every: Steps between lines of ``metrics.jsonl``.
        log_pair_ids: Also write ``pairs.jsonl``: the pair ids each step trained on.
        seed: Seeds the weights, dropout and the data order.
    """

    data: str
    out: str
    epochs: int = 20
    steps: int | None = None
    batch_size: int = 16
    device: str = "auto"
    amp: str = "auto"
    compile: bool = False
    num_workers: int = 2
    ngf: int = 64
    ndf: int = 64
    max_filters: int | None = None
    depth: int | None = None
    n_layers: int = 3
    norm: str = "batch"
    dropout: float = 0.5
    loss: str = "gan"
    gan_mode: str = "bce"
    recon: str = "bce"
    lambda_recon: float = 100.0
    recon_weighting: str = "balanced"
    harmony: bool = True
    pitch_rows: str = "0:128"
    ema: float = 0.999
    d_sees: str = "samples"
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    decay_start: float = 0.5
    transpose: int = 0
    shuffle_buffer: int = 1024
    checkpoint_every: int = 1000
    keep_checkpoints: int = 5
    eval_every: int = 1000
    eval_samples: int = 512
    sample_count: int = 4
    log_every: int = 50
    log_pair_ids: bool = False
    seed: int = 0

    @property
    def rows(self) -> tuple[int, int]:
        """``pitch_rows`` as (LO, HI)."""
        try:
            lo, hi = (int(x) for x in str(self.pitch_rows).split(":"))
        except ValueError:
            raise ValueError(f"pitch_rows must be LO:HI (e.g. 28:92), got "
                             f"{self.pitch_rows!r}") from None
        return lo, hi

    def __post_init__(self):
        choices = {"amp": ("auto", "bf16", "fp16", "off"), "norm": ("batch", "instance"),
                   "loss": ("gan", "recon"), "gan_mode": ("bce", "lsgan"),
                   "recon": ("bce", "l1"), "d_sees": ("samples", "probabilities"),
                   "recon_weighting": ("balanced", "uniform")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, "
                                 f"not {getattr(self, name)!r}")
        positive = ("epochs", "batch_size", "ngf", "ndf", "n_layers", "checkpoint_every",
                    "eval_samples", "log_every")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps!r}")
        if self.max_filters is not None and self.max_filters < self.ngf:
            raise ValueError(f"max_filters must be >= ngf ({self.ngf}), got "
                             f"{self.max_filters!r}")
        if self.depth is not None and self.depth < 1:
            raise ValueError(f"depth must be >= 1, got {self.depth!r}")
        lo, hi = self.rows
        if not 0 <= lo < hi <= 128:
            raise ValueError(f"pitch_rows must be LO:HI with 0 <= LO < HI <= 128, got "
                             f"{self.pitch_rows!r}")
        if not 0 <= self.ema < 1:
            raise ValueError(f"ema must be in [0, 1), got {self.ema!r}")
        if not 0 <= self.decay_start <= 1 or not 0 <= self.dropout < 1:
            raise ValueError("decay_start must be in [0, 1] and dropout in [0, 1)")
        for name in ("num_workers", "transpose", "keep_checkpoints", "eval_every",
                     "sample_count"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
