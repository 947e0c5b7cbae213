"""``musicpairs plot``: a training run's curves as a PNG."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("plot")
@click.argument("run", type=click.Path(exists=True))
@click.option("-o", "--out", type=click.Path(dir_okay=False),
              help="PNG to write [RUN/curves.png].")
def plot(run: str, out: str | None) -> None:
    """Draw RUN's losses, valid scores and learning rate (from metrics.jsonl) to a PNG."""
    from musicpairs.model.curves import plot_curves

    folder = Path(run) if Path(run).is_dir() else Path(run).parent
    click.echo(plot_curves(run, out or folder / "curves.png"))
