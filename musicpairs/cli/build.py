"""``musicpairs build``: a corpus in, Parquet shards of pair windows out."""

from __future__ import annotations

import json
import sys

import click

from musicpairs.datasets import SOURCES
from musicpairs.midi import PARSERS
from musicpairs.pairing import TASKS


def _list_tasks(ctx: click.Context, _param, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    for name, text in TASKS.items():
        click.echo(f"{name:16s} {text}")
    ctx.exit()


@click.command("build")
@click.option("--list-tasks", is_flag=True, expose_value=False, is_eager=True,
              callback=_list_tasks, help="List the tasks and exit.")
@click.option("--src", type=click.Choice(SOURCES), required=True, help="Corpus layout.")
@click.option("--path", help="Where the corpus is (bach needs none).")
@click.option("--task", type=click.Choice(list(TASKS)), default="melody2accomp",
              show_default=True)
@click.option("--out", type=click.Path(file_okay=False), required=True,
              help="Dataset folder to write.")
@click.option("--window", type=click.IntRange(min=1), default=256, show_default=True,
              help="Window length in steps.")
@click.option("--hop", type=click.IntRange(min=1), default=128, show_default=True,
              help="Steps between window starts (each start is a downbeat).")
@click.option("--min-notes", type=click.IntRange(min=0), default=4, show_default=True,
              help="Onsets a window's source and target each need to be kept.")
@click.option("--min-confidence", type=click.FloatRange(0, 1), default=0.5,
              show_default=True, help="version2version: lowest alignment confidence kept.")
@click.option("--melody-confidence", type=click.FloatRange(0, 1), default=0.6,
              show_default=True,
              help="Melody tasks: how clearly the classifier must prefer a melody found by "
                   "content over the runner-up (its share of the best two; 0.5 is a tie); "
                   "files below go to rejects as 'no confident melody'. 0: always pick.")
@click.option("--steps-per-beat", type=click.IntRange(min=1), default=4, show_default=True)
@click.option("--songs-per-shard", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--parser", type=click.Choice(PARSERS), default="symusic", show_default=True)
@click.option("--group-by", type=click.Choice(["file", "parent"]), default="file",
              show_default=True, help="folder: song id from the file stem or parent folder.")
@click.option("--dedup", type=click.Choice(["none", "md5", "content"]),
              help="Group files into songs before splits: the corpus's songs only (none), "
                   "and identical files (md5), and near-duplicates by content [content; "
                   "none for pop909 and bach, whose songs content only checks for copies].")
@click.option("--dedup-threshold", type=click.IntRange(min=1), default=24, show_default=True,
              help="content: melodic shingles two files must share to be one song.")
@click.option("--groups", type=click.Path(exists=True, dir_okay=False),
              help="A published near-duplicate list (JSON, both ISMIR 2025 Lakh layouts) "
                   "to group files by, instead of content.")
@click.option("--keep", type=click.Choice(["all", "one"]), default="all", show_default=True,
              help="Every version of a song, or only its first file.")
@click.option("--workers", type=click.IntRange(min=1), help="Local Dask workers [all cores].")
@click.option("--scheduler", help="Run on an existing Dask cluster (tcp://host:port).")
@click.option("--resume", is_flag=True, help="Finish an interrupted build in --out.")
@click.option("--overwrite", is_flag=True,
              help="Replace an earlier build in --out (only a folder a build wrote).")
@click.option("--limit", type=click.IntRange(min=1), help="At most N songs.")
@click.option("--json", "as_json", is_flag=True, help="Print one final JSON line.")
def build(src, path, task, out, window, hop, min_notes, min_confidence, melody_confidence,
          steps_per_beat, songs_per_shard, parser, group_by, dedup, dedup_threshold, groups,
          keep, workers, scheduler, resume, overwrite, limit, as_json) -> None:
    """Crawl a corpus, pair and window its songs on Dask, write Parquet shards."""
    from musicpairs.build import BuildConfig
    from musicpairs.build import build as run_build

    cfg = BuildConfig(src=src, path=path, task=task, out=out, window=window, hop=hop,
                      min_notes=min_notes, min_confidence=min_confidence,
                      melody_confidence=melody_confidence, steps_per_beat=steps_per_beat,
                      songs_per_shard=songs_per_shard,
                      parser=parser, group_by=group_by, dedup=dedup,
                      dedup_threshold=dedup_threshold, groups=groups, keep=keep, workers=workers,
                      scheduler=scheduler, limit=limit)
    try:
        summary = run_build(cfg, resume=resume, overwrite=overwrite, progress=_ProgressBar())
    except (ValueError, FileNotFoundError) as e:
        raise click.ClickException(str(e)) from e
    if as_json:
        click.echo(json.dumps(summary))
    else:
        s = summary["splits"]
        click.echo(f"{summary['pairs']} pairs (train {s['train']}, valid {s['valid']}, "
                   f"test {s['test']}) from {summary['songs']} songs, {summary['files']} "
                   f"files; {summary['rejected']} rejected; {summary['seconds']:.1f} s "
                   f"-> {summary['out']}")
        d = summary.get("dedup")
        if d:
            click.echo(f"songs ({d['mode']}): {d['songs']} from {d['files']} files, "
                       f"{d['files_in_shared_songs']} files in songs of several; "
                       f"{d['cross_song_copies']} copies across songs -> songs.parquet")
        for line in summary.get("warnings") or []:  # --json carries them in its line
            click.echo(f"warning: {line}", err=True)


class _ProgressBar:
    """Partitions done, on stderr; a total once the crawl has finished."""

    def __call__(self, done: int, total: int | None) -> None:
        if not sys.stderr.isatty():
            return
        text = f"{done}/{total}" if total else f"{done}"
        click.echo(f"\rbuild: {text} partitions", nl=False, err=True)
        if total and done >= total:
            click.echo("", err=True)
