"""``musicpairs evaluate`` and ``musicpairs convert``: score a checkpoint against
baselines; convert a MIDI file with it."""

from __future__ import annotations

import json

import click

from musicpairs.errors import MusicpairsError


def _model_file(checkpoint: str | None, model: str | None, default: str | None) -> str:
    """The file a command reads its generator from: ``--checkpoint``, or the shipped
    model ``--model`` names (``default`` when neither is given; None: one is needed)."""
    from musicpairs.model.pretrained import model_path

    if checkpoint and model:
        raise click.UsageError("give --checkpoint or --model, not both")
    if checkpoint:
        return checkpoint
    if not (model or default):
        raise click.UsageError("give --checkpoint PATH or --model NAME (musicpairs models "
                               "lists the shipped ones)")
    return str(model_path(model or default))


@click.command()
@click.option("--checkpoint", type=click.Path(dir_okay=False),
              help="The model: a run's generator.pt, last.pt or step-*.pt.")
@click.option("--model", help="A shipped model instead (musicpairs models lists them).")
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
def evaluate(checkpoint, model, data, split, compare, baselines, samples, retrieval_pool, tune,
             batch_size, device, examples, out, report, soundfont, as_json) -> None:
    """Score a generator against baselines on a split: frame P/R/F1 and Bay accuracy,
    onset F1, the MuseGAN metrics per channel, polyphony and note-length histograms."""
    from pathlib import Path

    from musicpairs.model.evaluate import evaluate as run
    from musicpairs.model.evaluate import format_report

    chosen = () if baselines.strip() == "none" else tuple(
        b.strip() for b in baselines.split(",") if b.strip())
    checkpoint = _model_file(checkpoint, model, None)
    out = out or (Path(checkpoint).parent / f"eval-{split}" if not model
                  else Path(f"eval-{model}-{split}"))
    result = run(checkpoint, data, split=split, compare=compare, baselines=chosen,
                 samples=samples, batch_size=batch_size, device=device, tune=tune,
                 retrieval_pool=retrieval_pool, examples=examples, out=out, report=report,
                 soundfont=soundfont)
    click.echo(json.dumps(result) if as_json else format_report(result))
    if result.get("report_audio_error"):  # the report is written, without its audio
        raise MusicpairsError(result["report_audio_error"])


@click.command()
@click.argument("midi_in", metavar="IN.mid", type=click.Path(dir_okay=False))
@click.option("--model",
              help="A shipped model (musicpairs models lists them) [default: "
                   "pop909-accompaniment, when no --checkpoint is given].")
@click.option("--checkpoint", type=click.Path(dir_okay=False),
              help="Your own model instead: a run's generator.pt, last.pt or step-*.pt.")
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
def convert(midi_in, model, checkpoint, midi_out, melody_track, hop, render, audio, soundfont,
            device, as_json) -> None:
    """Convert IN.mid with a trained generator: keep its tempo map, meters and melody,
    add the generated tracks."""
    from pathlib import Path

    from musicpairs.audio import find_soundfont, write_audio
    from musicpairs.model.convert import convert as run
    from musicpairs.model.pretrained import DEFAULT_MODEL

    checkpoint = _model_file(checkpoint, model, DEFAULT_MODEL)

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


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
def models(as_json) -> None:
    """List the models shipped with musicpairs: name, task, grid, window, size and the
    scores of their model cards (test split, against retrieval)."""
    from musicpairs.model.pretrained import models as shipped

    found = shipped()
    if as_json:
        click.echo(json.dumps(found))
        return
    if not found:
        click.echo("no models are shipped in this installation")
        return
    rows = [["name", "task", "grid", "window", "size", "frame F1", "onset F1",
             "retrieval frame/onset F1"]]
    for m in found:
        s, r = m["test_scores"]["model"], m["test_scores"]["retrieval"]
        size = f"{m['bytes'] / 1e6:.1f} MB" if m["bytes"] else "missing"
        rows.append([m["name"], m["task"], f"1/{m['steps_per_beat']} beat",
                     f"{m['window']} steps", size, f"{s['frame_f1']:.3f}",
                     f"{s['onset_f1']:.3f}", f"{r['frame_f1']:.3f} / {r['onset_f1']:.3f}"])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    for m in found:
        click.echo(f"{m['name']}: {m['description']}")


@click.command()
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("-o", "--out", required=True, type=click.Path(dir_okay=False),
              help="The packed generator (.pt).")
@click.option("--tune-on", metavar="DATA",
              help="Tune the decoding settings again on this dataset's valid split, with "
                   "the packed weights [default: keep the checkpoint's].")
def pack(checkpoint, out, tune_on) -> None:
    """Pack a run's generator for shipping: int8 weights with a scale per output slice,
    the decoding settings and pitch ranges kept (about half the size of generator.pt)."""
    from musicpairs.model.checkpoint import pack_generator

    done = pack_generator(checkpoint, out, tune_on=tune_on)
    click.echo(f"{out}: {done['bytes'] / 1e6:.1f} MB, {done['values']:,} weights as int8 "
               f"(largest error {done['max_error']:.2g})")
