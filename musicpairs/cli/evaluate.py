"""``musicpairs evaluate`` and ``musicpairs convert``: score a checkpoint against
baselines; convert a MIDI file with it."""

from __future__ import annotations

import json

import click

from musicpairs.errors import MusicpairsError


@click.command()
@click.option("--checkpoint", required=True, type=click.Path(dir_okay=False),
              help="The model: a run's last.pt or step-*.pt.")
@click.option("--data", required=True, type=str,
              help="Dataset folder or fsspec URL with the same task and shapes.")
@click.option("--split", default="test", show_default=True,
              type=click.Choice(["test", "valid", "train"]), help="Split scored.")
@click.option("--compare", multiple=True, type=click.Path(dir_okay=False),
              help="Another checkpoint scored in the same run (repeatable), e.g. the "
                   "L1-only ablation.")
@click.option("--baselines", default="empty,copy,retrieval", show_default=True,
              help="Comma-separated baselines (empty, copy, retrieval), or 'none'.")
@click.option("--samples", type=click.IntRange(min=1),
              help="Score only the first N pairs of the split.")
@click.option("--retrieval-pool", default=50_000, show_default=True, type=click.IntRange(min=1),
              help="Train pairs the retrieval baseline searches.")
@click.option("--tune", is_flag=True,
              help="Tune the decoding thresholds on the valid split now instead of using "
                   "those stored with each checkpoint.")
@click.option("--batch-size", default=16, show_default=True, type=click.IntRange(min=1))
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--examples", default=4, show_default=True, type=click.IntRange(min=0),
              help="Pairs drawn in examples.png.")
@click.option("--out", type=click.Path(file_okay=False),
              help="Folder for metrics.json and examples.png [default: eval-<split> next "
                   "to the checkpoint].")
@click.option("--report", is_flag=True,
              help="Also write report.html: scores, example rolls with audio players, the "
                   "run's training curves (one self-contained page).")
@click.option("--soundfont", type=click.Path(dir_okay=False),
              help="The SoundFont for the report's audio [default: $MUSICPAIRS_SOUNDFONT, "
                   "else a system one].")
@click.option("--json", "as_json", is_flag=True, help="Print the scores as one JSON object.")
def evaluate(checkpoint, data, split, compare, baselines, samples, retrieval_pool, tune,
             batch_size, device, examples, out, report, soundfont, as_json) -> None:
    """Score a generator against baselines on a split: frame P/R/F1 and Bay accuracy,
    onset F1, the MuseGAN metrics per channel, polyphony and note-length histograms."""
    from pathlib import Path

    from musicpairs.model.evaluate import evaluate as run
    from musicpairs.model.evaluate import format_report

    chosen = () if baselines.strip() == "none" else tuple(
        b.strip() for b in baselines.split(",") if b.strip())
    out = out or Path(checkpoint).parent / f"eval-{split}"
    result = run(checkpoint, data, split=split, compare=compare, baselines=chosen,
                 samples=samples, batch_size=batch_size, device=device, tune=tune,
                 retrieval_pool=retrieval_pool, examples=examples, out=out, report=report,
                 soundfont=soundfont)
    click.echo(json.dumps(result) if as_json else format_report(result))
    if result.get("report_audio_error"):  # the report is written, without its audio
        raise MusicpairsError(result["report_audio_error"])


@click.command()
@click.argument("midi_in", metavar="IN.mid", type=click.Path(dir_okay=False))
@click.option("--checkpoint", required=True, type=click.Path(dir_okay=False),
              help="The model: a run's last.pt or step-*.pt.")
@click.option("-o", "--out", "midi_out", required=True, type=click.Path(dir_okay=False),
              help="The converted MIDI file.")
@click.option("--melody-track", type=int,
              help="The melody's track index (as musicpairs inspect midi lists them); found "
                   "by role by default.")
@click.option("--hop", type=click.IntRange(min=1),
              help="Steps between window starts [default: half a window].")
@click.option("--render", type=click.Path(dir_okay=False), help="Also draw the result as a PNG.")
@click.option("--audio", type=click.Path(dir_okay=False),
              help="Also synthesize the result to this .wav (or .flac) with a GM SoundFont.")
@click.option("--soundfont", type=click.Path(dir_okay=False),
              help="The SoundFont for --audio [default: $MUSICPAIRS_SOUNDFONT, else a "
                   "system one].")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
def convert(midi_in, checkpoint, midi_out, melody_track, hop, render, audio, soundfont, device,
            as_json) -> None:
    """Convert IN.mid with a trained generator: keep its tempo map, meters and melody,
    add the generated tracks."""
    from pathlib import Path

    from musicpairs.audio import find_soundfont, write_audio
    from musicpairs.model.convert import convert as run

    font_error = None
    if audio:  # said after the MIDI and the picture are written, which need no SoundFont
        try:
            find_soundfont(soundfont)
        except MusicpairsError as e:
            font_error = e
    summary = run(checkpoint, midi_in, midi_out, melody_track=melody_track, hop=hop,
                  render=render, device=device)
    if audio and font_error is None:
        summary.update(write_audio(Path(midi_out).read_bytes(), audio, soundfont=soundfont))
    if as_json:
        click.echo(json.dumps(summary))
    else:
        _say_converted(summary)
    if font_error is not None:
        raise font_error


def _say_converted(summary: dict) -> None:
    notes = ", ".join(f"{k} {v} notes" for k, v in summary["generated_notes"].items())
    source = ", ".join(f"{t['index']} {t['name'] or '(unnamed)'}"
                       for t in summary["source_tracks"])
    click.echo(f"{summary['output']}: {summary['task']} from track {source}; "
               f"{summary['windows']} windows; generated {notes}")
    if "render" in summary:
        click.echo(f"render: {summary['render']}")
    if "audio" in summary:
        click.echo(f"audio: {summary['audio']} ({summary['seconds']:.1f} s)")
