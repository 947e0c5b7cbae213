"""Training curves: a run's ``metrics.jsonl`` drawn to a PNG (matplotlib, no display)."""

from __future__ import annotations

import json
from pathlib import Path

from musicpairs.errors import MusicpairsError

#: Panels and the metrics.jsonl keys each draws, when the run logged them.
PANELS = (
    ("losses", ("loss_g_recon", "loss_g_gan", "loss_d")),
    ("valid: frame scores", ("valid_frame_f1", "valid_frame_precision",
                             "valid_frame_recall", "valid_tuned_frame_f1")),
    ("valid: onset F1 (tuned)", ("valid_tuned_onset_f1",)),
    ("learning rate", ("lr",)),
)


def read_metrics(run: str | Path) -> list[dict]:
    """The records of ``RUN/metrics.jsonl`` (or of that file itself).

    Raises:
        MusicpairsError: No such file, or a line that is not JSON.
    """
    path = Path(run)
    if path.is_dir():
        path = path / "metrics.jsonl"
    if not path.is_file():
        raise MusicpairsError(f"{path}: no metrics.jsonl (is this a training run folder?)")
    records = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except ValueError as e:
                raise MusicpairsError(f"{path}:{n}: not a JSON line: {e}") from e
    return records


def plot_curves(run: str | Path, out: str | Path, *, dpi: int = 100) -> Path:
    """Draw a run's losses, valid scores and learning rate against the step.

    Returns:
        The PNG written.

    Raises:
        MusicpairsError: No metrics, or none of the known keys in them.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    records = read_metrics(run)
    panels = []
    for title, keys in PANELS:
        series = []
        for key in keys:
            points = [(r["step"], r[key]) for r in records
                      if isinstance(r.get(key), int | float) and "step" in r]
            if points:
                series.append((key, points))
        if series:
            panels.append((title, series))
    if not panels:
        raise MusicpairsError(f"{run}: metrics.jsonl holds no losses or scores yet")
    fig = Figure(figsize=(8, 2.4 * len(panels)), dpi=dpi)
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    for ax, (title, series) in zip(axes, panels, strict=True):
        for key, points in series:
            steps, values = zip(*points, strict=True)
            ax.plot(steps, values, label=key, marker="o" if len(points) < 30 else None,
                    markersize=3)
        ax.set_title(title, fontsize=9, loc="left")
        ax.legend(fontsize=7, loc="best")
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("step")
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return out
