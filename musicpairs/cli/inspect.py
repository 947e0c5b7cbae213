"""``musicpairs inspect``: look at MIDI files (and, later, shards and datasets)."""

from __future__ import annotations

import json

import click

from musicpairs.config import RollSpec
from musicpairs.midi import PARSERS


@click.group(cls=click.Group)
def inspect() -> None:
    """Summaries of MIDI files."""


@inspect.command("midi")
@click.argument("file", type=click.Path(dir_okay=False, path_type=str))
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of a table.")
@click.option("--parser", type=click.Choice(PARSERS), default="symusic", show_default=True,
              help="MIDI parser backend.")
@click.option("--steps-per-beat", type=click.IntRange(min=1), default=4, show_default=True,
              help="Grid resolution for the lengths in steps.")
def midi(file: str, as_json: bool, parser: str, steps_per_beat: int) -> None:
    """Tracks (name, program, drum flag, notes, role, family), tempo map, meters, length."""
    from musicpairs.inspect import format_midi_summary, midi_summary

    summary = midi_summary(file, parser=parser, spec=RollSpec(steps_per_beat=steps_per_beat))
    click.echo(json.dumps(summary, ensure_ascii=False) if as_json
               else format_midi_summary(summary))
