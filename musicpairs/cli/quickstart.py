"""``musicpairs quickstart``: build, train, evaluate and convert, with nothing downloaded."""

from __future__ import annotations

import json

import click

from musicpairs.errors import MusicpairsError


@click.command()
@click.option("--out", default="musicpairs-quickstart", show_default=True,
              type=click.Path(file_okay=False), help="Folder for everything it makes.")
@click.option("--minutes", default=5.0, show_default=True, type=click.FloatRange(min=0.1),
              help="The whole call's time: build, train, evaluate, convert (training gets "
                   "what is left, measured into steps). Again with more minutes: the run "
                   "in --out trains further.")
@click.option("--steps", type=click.IntRange(min=1), help="Train exactly N steps instead.")
@click.option("--limit", type=click.IntRange(min=3), help="Only the first N chorales.")
@click.option("--ngf", type=click.IntRange(min=1), help="Generator width [32].")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
def quickstart(out, minutes, steps, limit, ngf, device, as_json) -> None:
    """Bach chorales -> melody2accomp pairs -> pix2pix -> scores against baselines -> a
    held-out chorale's melody converted. Run it again to reuse what it made."""
    from musicpairs.model.quickstart import quickstart as run

    model = {"ngf": ngf, "ndf": ngf} if ngf else None

    def say(line: str) -> None:
        click.echo(line, err=as_json)

    summary = run(out, minutes=minutes, steps=steps, limit=limit, device=device, model=model,
                  say=say)
    if as_json:
        click.echo(json.dumps({k: v for k, v in summary.items() if k != "report"}))
    else:
        _say_summary(summary)
    if summary["audio_error"]:  # said last, once everything else is written
        raise MusicpairsError(summary["audio_error"])


def _say_summary(summary: dict) -> None:
    click.echo("")
    click.echo(summary["report"])
    click.echo("")
    click.echo(f"converted {summary['chorale']} (held out): {summary['input_midi']} -> "
               f"{summary['converted_midi']}")
    click.echo(f"picture: {summary['converted_png']}")
    if summary["converted_audio"]:
        click.echo(f"audio: {summary['converted_audio']}")
    click.echo(f"report: {summary['report_html']} (scores, examples with audio, curves)")
    click.echo(f"model: {summary['checkpoint']}; dataset: {summary['dataset']}; took "
               f"{summary['seconds'] / 60:.1f} min")
