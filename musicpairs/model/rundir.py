"""A training run's folder: its config, resuming it, and its logs (``metrics.jsonl``,
``pairs.jsonl``, TensorBoard scalars when tensorboard is installed)."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

from musicpairs.config import RESUMABLE_CHANGES, TrainConfig
from musicpairs.errors import MusicpairsError
from musicpairs.model.checkpoint import LAST

log = logging.getLogger(__name__)


class TrainError(MusicpairsError):
    """A run cannot start or resume as asked."""


def read_run_config(run: Path) -> TrainConfig:
    """A run folder's ``config.json``.

    Raises:
        TrainError: It is not JSON, or not a config of this musicpairs (an older run).
    """
    try:
        return TrainConfig.from_dict(json.loads((run / "config.json").read_text()))
    except (ValueError, TypeError) as e:
        raise TrainError(f"{run}: config.json is not a run config of this musicpairs ({e}); "
                         "an older run cannot go on: start a new one in another folder") from e


def _check_resume(cfg: TrainConfig, run: Path) -> None:
    saved = read_run_config(run)
    changed = [k for k, v in asdict(cfg).items()
               if v != getattr(saved, k) and k not in RESUMABLE_CHANGES]
    if changed:
        raise TrainError(f"{run}: cannot resume with other {', '.join(changed)} than the "
                         "run was started with (only " + ", ".join(sorted(RESUMABLE_CHANGES))
                         + " may change)")


def truncate_log(path: Path, step: int) -> None:
    """Drop the lines a killed run wrote after its last checkpoint."""
    if path.is_file():
        lines = path.read_text().splitlines(keepends=True)
        kept = [line for line in lines if line.strip() and json.loads(line)["step"] <= step]
        path.write_text("".join(kept))


def prepare_run(cfg: TrainConfig, resume: bool) -> tuple[Path, bool]:
    """Check the run folder: a new run needs it free of checkpoints, a resumed one a
    compatible config.

    A run stopped before its first checkpoint left a config and perhaps a few log lines
    but nothing to continue from: ``--resume`` (with a compatible config) and a fresh
    start both start it again from step 0.

    Returns:
        The run folder, and whether there is a checkpoint to resume from.
    """
    run = Path(cfg.out)
    if resume:
        if not (run / "config.json").is_file():
            raise TrainError(f"{run}: nothing to resume (no config.json: no run started "
                             "here)")
        _check_resume(cfg, run)
        if not (run / LAST).is_file():
            log.info("%s: stopped before its first checkpoint; starting it again", run)
            truncate_log(run / "metrics.jsonl", -1)
            truncate_log(run / "pairs.jsonl", -1)
            return run, False
    elif (run / LAST).exists():
        raise TrainError(f"{run}: holds a run already; pass --resume to continue it, or "
                         "choose another --out")
    elif (run / "config.json").exists():  # started, stopped before a checkpoint
        truncate_log(run / "metrics.jsonl", -1)
        truncate_log(run / "pairs.jsonl", -1)
    return run, resume


class RunLogs:
    """metrics.jsonl / pairs.jsonl lines, and TensorBoard scalars when it is installed."""

    def __init__(self, run: Path):
        self.run = run
        self.files: dict[str, Any] = {}
        self.tb = None
        import importlib.util

        if importlib.util.find_spec("tensorboard") is not None:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(run / "tb"))

    def write(self, name: str, record: dict[str, Any]) -> None:
        if name not in self.files:
            self.files[name] = (self.run / name).open("a")
        f = self.files[name]
        f.write(json.dumps(record) + "\n")
        f.flush()
        if self.tb is not None and name == "metrics.jsonl":
            for key, value in record.items():
                if key not in ("step", "epoch") and isinstance(value, (int, float)):
                    self.tb.add_scalar(key, value, record["step"])

    def close(self) -> None:
        for f in self.files.values():
            f.close()
        if self.tb is not None:
            self.tb.close()
