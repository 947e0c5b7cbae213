"""``musicpairs inspect``: look at MIDI files, shards and datasets."""

from __future__ import annotations

import json

import click

from musicpairs.config import RollSpec
from musicpairs.midi import PARSERS


@click.group(cls=click.Group)
def inspect() -> None:
    """Summaries, pictures and sound of MIDI files, shards and datasets."""


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


@inspect.command("shard")
@click.argument("file", type=click.Path(dir_okay=False, path_type=str))
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of text.")
@click.option("--row", type=int, default=None, help="The row to show (default 0).")
@click.option("--pair-id", default=None, help="The row to show, by its pair_id.")
@click.option("--render", "render_png", type=click.Path(dir_okay=False, path_type=str),
              help="Draw the row's source and target rolls into this PNG.")
@click.option("--ascii", "as_ascii", is_flag=True,
              help="Print the row as a compact piano roll.")
@click.option("--midi", "midi_out", type=click.Path(dir_okay=False, path_type=str),
              help="Write the row's source and target as one multi-track MIDI file.")
@click.option("--audio", "audio_out", type=click.Path(dir_okay=False, path_type=str),
              help="Synthesize the row's source and target to this .wav (or .flac) with a "
                   "GM SoundFont.")
@click.option("--soundfont", type=click.Path(dir_okay=False, path_type=str),
              help="The SoundFont for --audio [default: $MUSICPAIRS_SOUNDFONT, else a "
                   "system one].")
@click.option("--width", type=click.IntRange(min=16), default=128, show_default=True,
              help="Characters per line for --ascii.")
def shard(file: str, as_json: bool, row: int | None, pair_id: str | None,
          render_png: str | None, as_ascii: bool, midi_out: str | None, audio_out: str | None,
          soundfont: str | None, width: int) -> None:
    """What a shard holds; or one row of it as a picture, text or MIDI.

    Without row options: metadata (task, shapes, channels, steps per beat), rows, row
    groups, size and compression, songs, the confidence distribution, note density and
    polyphony per channel, and the first rows' ids.

    With --render, --ascii, --midi or --audio (on row 0, or --row N, or --pair-id ID): the MIDI
    starts the window at bar 2 (bar 1 holds notes already sounding when it begins);
    reading it back with musicpairs gives the row's rolls exactly.
    """
    from musicpairs.audio import find_soundfont, write_audio
    from musicpairs.errors import MusicpairsError
    from musicpairs.inspect import (
        ascii_pair,
        format_shard_summary,
        read_row,
        render_pair,
        shard_summary,
    )
    from musicpairs.midi import score_to_midi_bytes, write_midi
    from musicpairs.pairing import pair_to_score

    if row is not None and pair_id is not None:
        raise click.UsageError("give --row or --pair-id, not both")
    wants_row = row is not None or pair_id is not None
    if not (render_png or as_ascii or midi_out or audio_out):
        if wants_row:
            raise click.UsageError("--row and --pair-id go with --render, --ascii, --midi or "
                                   "--audio")
        s = shard_summary(file)
        click.echo(json.dumps(s, ensure_ascii=False) if as_json else format_shard_summary(s))
        return
    meta, got = read_row(file, row=row, pair_id=pair_id)
    result = {"row": got["row"], "pair_id": got["pair_id"], "song_id": got["song_id"],
              "source_file": got["source_file"], "target_file": got["target_file"],
              "start_beat": got["start_beat"], "confidence": round(float(got["confidence"]), 4)}
    if render_png:
        result["render"] = str(render_pair(meta, got, render_png))
    if midi_out:
        result["midi"] = str(write_midi(pair_to_score(meta, got["source"], got["target"]),
                                        midi_out))
    if as_ascii:
        result["ascii"] = ascii_pair(meta, got, width=width)
    font_error = None
    if audio_out:  # what needs no SoundFont is written whether or not one is found
        try:
            find_soundfont(soundfont)
            midi = score_to_midi_bytes(pair_to_score(meta, got["source"], got["target"]))
            result["audio"] = write_audio(midi, audio_out, soundfont=soundfont)["audio"]
        except MusicpairsError as e:
            font_error = e
    _say_row(result, as_json)
    if font_error is not None:
        raise font_error


def _say_row(result: dict, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(result, ensure_ascii=False))
        return
    click.echo(f"row {result['row']}: pair {result['pair_id']}, song {result['song_id']}, "
               f"beat {result['start_beat']:g}, confidence {result['confidence']:.3f}")
    if "ascii" in result:
        click.echo(result["ascii"])
    for key in ("render", "midi", "audio"):
        if key in result:
            click.echo(f"wrote {result[key]}")


@inspect.command("dataset")
@click.argument("root", type=click.Path(file_okay=False, path_type=str))
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of text.")
@click.option("--verify", is_flag=True,
              help="Check every shard's sha256 against the manifest; exit 1 on a mismatch.")
@click.option("--examples", type=click.IntRange(min=0), default=3, show_default=True,
              help="Example files per reject reason.")
def dataset(root: str, as_json: bool, verify: bool, examples: int) -> None:
    """A dataset's manifest as a summary: rows, songs and bytes per split, rejects grouped
    by reason with examples, the build config."""
    from musicpairs.inspect import dataset_summary, format_dataset_summary, verify_dataset

    if verify:
        # Checked first: a damaged shard may not even open for the summary.
        problems = verify_dataset(root)
        if problems:
            if as_json:
                click.echo(json.dumps({"root": root, "verify": {"ok": False,
                                                                 "problems": problems}}))
            else:
                for line in problems:
                    click.echo(f"MISMATCH {line}")
                click.echo(f"verify: {len(problems)} shard(s) do not match the manifest")
            raise SystemExit(1)
    s = dataset_summary(root, examples=examples)
    n_shards = sum(x["shards"] for x in s["splits"].values())
    if verify:
        s["verify"] = {"ok": True, "problems": []}
    if as_json:
        click.echo(json.dumps(s, ensure_ascii=False))
        return
    click.echo(format_dataset_summary(s))
    if verify:
        click.echo(f"verify: all {n_shards} shards match the manifest (sha256)")
