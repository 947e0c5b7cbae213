"""The ``musicpairs`` command: one Click group, one module per command family."""

from __future__ import annotations

import logging
import os

import click

from musicpairs import __version__
from musicpairs.errors import MusicpairsError


class _Group(click.Group):
    """A group whose commands report musicpairs errors as one line and exit 1."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except MusicpairsError as e:
            raise click.ClickException(str(e)) from e


@click.group(cls=_Group, context_settings={"auto_envvar_prefix": "MUSICPAIRS",
                                           "help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="musicpairs")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors.")
def main(verbose: int, quiet: bool) -> None:
    """Paired piano-roll datasets from MIDI, and pix2pix to convert music."""
    level = logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[
        min(verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    # Dask sets its own loggers to INFO when it is imported; keep them quiet unless -vv.
    if verbose < 2:
        os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "error" if quiet else "warning")


def _register() -> None:
    from musicpairs.cli.build import build
    from musicpairs.cli.evaluate import convert, evaluate, models, pack
    from musicpairs.cli.inspect import inspect
    from musicpairs.cli.plot import plot
    from musicpairs.cli.quickstart import quickstart
    from musicpairs.cli.train import train

    for command in (build, inspect, train, evaluate, convert, models, pack, quickstart, plot):
        main.add_command(command)


_register()
