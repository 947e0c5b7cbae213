"""The build: crawl a corpus, parse and pair its songs on Dask, write Parquet shards.

Songs are cut into partitions of ``songs_per_shard`` consecutive songs (the crawl order is
stable). One Dask task per partition reads, pairs and writes that partition's shards, one
per split (``<split>/part-NNNNN.parquet``), each atomically, then a small record
``_build/part-NNNNN.json`` saying what it wrote and rejected. ``--resume`` skips the
partitions that have a record, so an interrupted build finishes with the same rows and
bytes as an uninterrupted one. ``rejects.parquet`` and ``manifest.json`` are written last.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from musicpairs.align import align_versions
from musicpairs.cluster import Tasks
from musicpairs.config import RollSpec
from musicpairs.datasets import make_corpus
from musicpairs.datasets.base import Song
from musicpairs.errors import MidiReadError, MusicpairsError
from musicpairs.midi import read_midi
from musicpairs.pairing import (
    CHANNELS,
    TASKS,
    Pair,
    PairingError,
    WindowConfig,
    channel_shapes,
    cut_windows,
    melody_split,
    merge_tracks,
)
from musicpairs.roll import midi_to_roll
from musicpairs.shards import (
    SPLITS,
    ShardMeta,
    ShardWriter,
    atomic_write_bytes,
    write_rejects,
)

log = logging.getLogger(__name__)

RECORDS = "_build"
DEFAULT_SPLITS = (0.9, 0.05, 0.05)  # train, valid, test
# DTW holds an n x m float64 matrix: 25M cells (200 MB) is two ~1-hour versions.
MAX_DTW_CELLS = 25_000_000
# Fields that change what a build writes: a resumed build must agree on all of them.
_DATA_FIELDS = ("src", "path", "task", "steps_per_beat", "window", "hop", "min_notes",
                "min_confidence", "melody_confidence", "songs_per_shard", "max_notes",
                "parser", "limit", "group_by", "splits", "dedup", "dedup_threshold", "groups",
                "keep")
DEDUP_MODES = ("none", "md5", "content")
CURATED_SOURCES = ("pop909", "bach")  # corpora that name their own songs


class BuildError(MusicpairsError):
    """The build cannot start or go on (bad options, an output folder in the way)."""


@dataclass(frozen=True)
class BuildConfig:
    """Everything a build needs; written to ``OUT/config.json`` and into the manifest.

    Attributes:
        src: Corpus kind: ``bach``, ``pop909``, ``lakh`` or ``folder``.
        path: Where the corpus is (not for ``bach``).
        task: One of ``musicpairs.pairing.TASKS``.
        out: The dataset folder to write.
        window, hop, min_notes: Window length and hop in steps; onsets a window's source
            and target each need to be kept.
        min_confidence: version2version pairs aligned with less go to rejects.
        melody_confidence: Melody tasks: how clearly the melody classifier must prefer
            a track found by content (not by name) over the runner-up: the best's share
            of the best two's probability, 0.5 (a tie) to 1 (see
            ``roles.MelodyChoice``). Files below it go to rejects as ``no confident
            melody``; 0 always takes the best candidate. Measured on real Lakh files in
            ``bench/melody_accuracy.py``.
        songs_per_shard: Songs per partition (one task, one shard per split).
        max_notes: Files with more notes are rejected before they are laid on the grid.
        splits: train / valid / test fractions, by a stable hash of the song id.
        dedup: How files are grouped into songs before splits are decided: ``none``
            (the corpus's songs), ``md5`` (and byte-identical files), ``content`` (and
            near-duplicates, by ``dedup.py``'s fingerprints). None: ``content``, but
            ``none`` for POP909 and Bach, which name their own songs; ``content`` there
            keeps their songs and only reports files that copy another song's.
        dedup_threshold: Shingles two files must share to be one song (``content``).
        groups: A published near-duplicate list (JSON) whose groups are used instead of
            content.
        keep: ``all`` versions of a song, or ``one`` (its first file) per song.
        workers: Local Dask worker processes (None: all cores); not used with scheduler.
        scheduler: Address of an existing Dask scheduler (``tcp://host:port``).
    """

    src: str
    task: str
    out: str
    path: str | None = None
    steps_per_beat: int = 4
    window: int = 256
    hop: int = 128
    min_notes: int = 4
    min_confidence: float = 0.5
    melody_confidence: float = 0.6
    songs_per_shard: int = 64
    max_notes: int = 1_000_000
    parser: str = "symusic"
    limit: int | None = None
    group_by: str = "file"
    splits: tuple[float, float, float] = DEFAULT_SPLITS
    dedup: str | None = None
    dedup_threshold: int = 24
    groups: str | None = None
    keep: str = "all"
    workers: int | None = None
    scheduler: str | None = None

    def __post_init__(self):
        if self.task not in TASKS:
            raise BuildError(f"unknown task {self.task!r}; choose one of {', '.join(TASKS)}")
        if self.window < 1 or self.hop < 1:
            raise BuildError("window and hop must be positive")
        if not 0.0 <= self.melody_confidence <= 1.0:
            raise BuildError(f"melody_confidence must be in [0, 1], got {self.melody_confidence}")
        if self.dedup is None:  # corpora that name their own songs keep them as they are
            object.__setattr__(self, "dedup",
                               "none" if self.src in CURATED_SOURCES else "content")
        if self.dedup not in DEDUP_MODES:
            raise BuildError(f"unknown dedup {self.dedup!r}; choose one of "
                             f"{', '.join(DEDUP_MODES)}")
        if self.keep not in ("all", "one"):
            raise BuildError(f"keep must be 'all' or 'one', got {self.keep!r}")
        if self.dedup_threshold < 1:
            raise BuildError("dedup_threshold must be at least 1")
        if self.keep == "one" and self.task == "version2version":
            raise BuildError("version2version needs every version of a song: use --keep all")
        if abs(sum(self.splits) - 1.0) > 1e-9 or min(self.splits) < 0:
            raise BuildError(f"split fractions must be >= 0 and sum to 1, got {self.splits}")

    @property
    def spec(self) -> RollSpec:
        return RollSpec(steps_per_beat=self.steps_per_beat)

    @property
    def windows(self) -> WindowConfig:
        return WindowConfig(self.window, self.hop, self.min_notes)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["splits"] = list(self.splits)
        return d

    def data_fields(self) -> dict[str, Any]:
        d = self.to_dict()
        return {k: d[k] for k in _DATA_FIELDS}

    def shard_meta(self) -> ShardMeta:
        src_shape, tgt_shape = channel_shapes(self.task, self.window)
        src_ch, tgt_ch = CHANNELS[self.task]
        return ShardMeta(self.task, self.steps_per_beat, src_shape, tgt_shape, src_ch, tgt_ch)


def split_of(song_id: str, fractions: tuple[float, float, float] = DEFAULT_SPLITS) -> str:
    """The split of a song, from a stable hash of its id (the same on every machine)."""
    u = int.from_bytes(hashlib.sha1(song_id.encode()).digest()[:8], "big") / 2**64
    if u < fractions[0]:
        return SPLITS[0]
    return SPLITS[1] if u < fractions[0] + fractions[1] else SPLITS[2]


# --------------------------------------------------------------------------------------
# One partition (runs on a worker)


def _reject(file: str, song_id: str, stage: str, reason: str) -> dict[str, str]:
    return {"file": file, "song_id": song_id, "stage": stage, "reason": reason}


def _read_roll(source, cfg: BuildConfig):
    """Read one version: (roll, None), or (None, the reason it cannot be used)."""
    try:
        # The roll orders same-named tracks itself (on the grid, as every parser agrees).
        score = read_midi(source.read_bytes(), parser=cfg.parser, name=source.uri,
                          canonical_order=False)
        n = score.note_count()
        if n > cfg.max_notes:
            raise MidiReadError(source.uri, f"{n} notes, over the limit of {cfg.max_notes}")
        if n == 0:
            raise MidiReadError(source.uri, "no notes")
        return midi_to_roll(score, cfg.spec), None
    except MidiReadError as e:
        return None, e.reason


def pair_song(song: Song, cfg: BuildConfig, melody_by: dict[str, int] | None = None,
              ) -> tuple[list[Pair], list[dict[str, str]]]:
    """All pairs of one song, and a reject row for every version that gave none.

    Args:
        song: The song.
        cfg: The build's configuration.
        melody_by: Melody tasks: counts of how each file's melody was found (``name``,
            ``content``) or why it was not (``no confident melody``, ``no melody
            track``), added to in place.
    """
    melody_by = {} if melody_by is None else melody_by
    pairs: list[Pair] = []
    rejects: list[dict[str, str]] = []
    rolls = []  # (source, roll) of each readable version
    for source in song.versions:
        roll, reason = _read_roll(source, cfg)
        if roll is None:
            rejects.append(_reject(source.uri, song.song_id, "read", reason))
        else:
            rolls.append((source, roll))
    spb = cfg.steps_per_beat
    if cfg.task != "version2version":
        for source, roll in rolls:
            try:
                src, tgt, by = melody_split(roll, cfg.task,
                                            min_confidence=cfg.melody_confidence)
            except PairingError as e:
                rejects.append(_reject(source.uri, song.song_id, "pair", e.reason))
                if e.kind:
                    melody_by[e.kind] = melody_by.get(e.kind, 0) + 1
                continue
            melody_by[by] = melody_by.get(by, 0) + 1
            found = cut_windows(cfg.task, song.song_id, src, tgt, roll.downbeats, cfg.windows,
                                steps_per_beat=spb, source_file=source.name,
                                target_file=source.name)
            if not found:
                rejects.append(_reject(source.uri, song.song_id, "window", _no_window(cfg)))
            pairs += found
        return pairs, rejects

    if len(rolls) == 1:
        rejects.append(_reject(rolls[0][0].uri, song.song_id, "pair",
                               "no other readable version of this song"))
    merged = [(source, roll, merge_tracks(roll, [k for k, t in enumerate(roll.tracks)
                                                 if not t.is_drum])) for source, roll in rolls]
    for i, (file_a, roll_a, a) in enumerate(merged):
        for file_b, _, b in merged[i + 1 :]:
            cells = (a.shape[-1] // spb + 1) * (b.shape[-1] // spb + 1)
            if cells > MAX_DTW_CELLS:
                rejects.append(_reject(file_b.uri, song.song_id, "align",
                                       f"too long to align with {file_a.name} "
                                       f"({cells} beat pairs, limit {MAX_DTW_CELLS})"))
                continue
            warped, confidence = align_versions(a, b, spb)
            if confidence < cfg.min_confidence:
                rejects.append(_reject(file_b.uri, song.song_id, "align",
                                       f"low confidence {confidence:.3f} against {file_a.name}"))
                continue
            found = cut_windows(cfg.task, song.song_id, a, warped, roll_a.downbeats,
                                cfg.windows, steps_per_beat=spb, source_file=file_a.name,
                                target_file=file_b.name, confidence=confidence)
            if not found:
                rejects.append(_reject(file_b.uri, song.song_id, "window", _no_window(cfg)))
            pairs += found
    return pairs, rejects


def _no_window(cfg: BuildConfig) -> str:
    return (f"no usable window ({cfg.window} steps with >= {cfg.min_notes} onsets in source "
            "and target)")


def build_partition(index: int, songs: list[Song], cfg: BuildConfig) -> dict[str, Any]:
    """Read, pair and write one partition; the only side effects are atomic file writes.

    Returns:
        The partition's record (also written to ``_build/part-NNNNN.json``): shards
        written, rejects, and counts of files, songs and pairs.
    """
    out = Path(cfg.out)
    meta = cfg.shard_meta()
    writers: dict[str, ShardWriter] = {}
    rejects: list[dict[str, str]] = []
    melody_by: dict[str, int] = {}
    # Pairs in which each target channel sounds at all (its frame plane holds a note).
    sounding = np.zeros(len(meta.target_channels), np.int64)
    files = 0
    try:
        for song in songs:
            files += len(song.versions)
            try:
                pairs, bad = pair_song(song, cfg, melody_by)
            except Exception as e:  # noqa: BLE001, PERF203 - one bad song must not stop it
                log.exception("song %s failed", song.song_id)
                pairs, bad = [], [_reject(v.uri, song.song_id, "error",
                                          f"{type(e).__name__}: {e}") for v in song.versions]
            rejects += bad
            if pairs:
                # Pairs go to their shard as each song is done, so a partition never holds
                # more than one song's rolls.
                split = split_of(song.song_id, cfg.splits)
                if split not in writers:
                    writers[split] = ShardWriter(out / split / f"part-{index:05d}.parquet",
                                                 meta, split)
                for pair in pairs:
                    writers[split].write(pair)
                    frames = pair.target[1::2].reshape(len(sounding), -1)  # (channels, ...)
                    sounding += frames.any(axis=1)
        shards = []
        for split in SPLITS:
            if split in writers:
                info = writers.pop(split).close()
                info["path"] = str(Path(info["path"]).relative_to(out))
                shards.append(info)
    finally:
        for writer in writers.values():  # an error left these unfinished
            writer.abort()
    record = {
        "index": index,
        "songs": len(songs),
        "files": files,
        "pairs": sum(s["rows"] for s in shards),
        "shards": shards,
        "rejects": rejects,
        "melody_by": dict(sorted(melody_by.items())),
        "target_sounding": sounding.tolist(),
    }
    atomic_write_bytes(out / RECORDS / f"part-{index:05d}.json",
                       json.dumps(record, sort_keys=True).encode())
    return record


# --------------------------------------------------------------------------------------
# The whole build (runs on the driver)


def _package_versions() -> dict[str, str]:
    out = {}
    for name in ("musicpairs", "symusic", "pretty_midi", "miditoolkit", "numpy", "pyarrow",
                 "dask", "distributed"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:  # noqa: PERF203 - a handful of names
            out[name] = "not installed"
    return out


def _is_build(out: Path) -> bool:
    """Whether a folder is a musicpairs dataset (finished or not)."""
    return (out / "config.json").is_file() and (out / RECORDS).is_dir()


def _prepare_out(cfg: BuildConfig, resume: bool, overwrite: bool = False) -> Path:
    out = Path(cfg.out)
    config_path = out / "config.json"
    if resume and overwrite:
        raise BuildError("--resume and --overwrite: choose one")
    if overwrite and out.exists() and any(out.iterdir()):
        if not _is_build(out):  # never delete a folder the build did not write
            raise BuildError(f"{out}: not a musicpairs build (no config.json and "
                             f"{RECORDS}/); --overwrite replaces only a build")
        import shutil

        shutil.rmtree(out)
    if resume:
        if not config_path.is_file():
            raise BuildError(f"{out}: nothing to resume: not a musicpairs build (no "
                             "config.json); build into another --out")
        before = json.loads(config_path.read_text())
        now = cfg.data_fields()
        changed = [k for k in now if before.get(k) != now[k]]
        if changed:
            raise BuildError(f"{out}: --resume with other options than the first run: "
                             f"{', '.join(changed)}")
        for stale in out.rglob(".*.tmp-*"):  # half-written files of the interrupted run
            stale.unlink()
    elif out.exists() and any(out.iterdir()):
        raise BuildError(
            f"{out}: folder exists and is not empty ("
            + ("--resume finishes that build, --overwrite replaces it, or use another --out"
               if _is_build(out) else "use another --out") + ")")
    (out / RECORDS).mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(config_path, json.dumps(cfg.to_dict(), indent=2, sort_keys=True).encode())
    return out


def build(
    cfg: BuildConfig,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: Callable[[int, int | None], None] | None = None,
) -> dict[str, Any]:
    """Run a build (or finish one with ``resume=True``).

    Args:
        cfg: The build's configuration.
        resume: Keep the fingerprints, songs and partitions an earlier run of the same
            build finished.
        overwrite: Delete an earlier build in ``cfg.out`` first (only a folder holding
            a build's ``config.json`` and ``_build/``).
        progress: Called with (partitions done, partitions in all or None while the
            crawl goes on) as partitions finish.

    Returns:
        The summary: ``files``, ``songs``, ``pairs``, ``splits`` (pairs per split),
        ``rejected``, ``seconds``, ``out``, ``dedup``.

    Raises:
        BuildError: Bad options, or an output folder that is in the way.
    """
    t0 = time.perf_counter()
    corpus = make_corpus(cfg.src, cfg.path, group_by=cfg.group_by)  # fails before any write
    if cfg.groups:
        from musicpairs.grouplists import read_group_lists

        try:
            read_group_lists(cfg.groups)
        except ValueError as e:
            raise BuildError(str(e)) from e
    out = _prepare_out(cfg, resume, overwrite)
    n_partitions = done = 0
    tasks = Tasks(cfg)
    try:
        songs = _songs(cfg, corpus, out, tasks)
        tasks.done = 0
        tasks.progress = progress and (lambda n: progress(done + n, None))
        # Partitions are formed as the crawl yields songs and at most a few per worker
        # are in flight, so an archive's bytes never sit in memory all at once.
        for index, batch in enumerate(_partitions(songs, cfg)):
            n_partitions += 1
            if (out / RECORDS / f"part-{index:05d}.json").is_file():
                done += 1
                continue
            tasks.submit(build_partition, index, batch, cfg)
        tasks.drain()
        done += tasks.done
    finally:
        tasks.close()
    if progress:
        progress(done, n_partitions)
    return _finish(cfg, out, corpus, n_partitions, time.perf_counter() - t0)


def _songs(cfg: BuildConfig, corpus, out: Path, tasks: Tasks):
    """The songs to pair: the corpus's own, or its files grouped (``songs.parquet``)."""
    from musicpairs import songs as song_stage

    corpus.rejected.clear()
    if cfg.dedup == "none" and not cfg.groups:
        return song_stage.crawl_songs(corpus, cfg.limit)
    import pyarrow.parquet as pq

    path = out / song_stage.SONGS_FILE
    if not path.is_file():
        folder = out / RECORDS / song_stage.FINGERPRINTS
        content = cfg.dedup == "content" and not cfg.groups
        folder.mkdir(parents=True, exist_ok=True)
        files = song_stage.fingerprint_corpus(corpus, cfg.limit, cfg.songs_per_shard, folder,
                                              content, tasks.submit)
        tasks.drain()
        table = song_stage.group_corpus(
            files, folder, mode=cfg.dedup, threshold=cfg.dedup_threshold, groups=cfg.groups,
            curated=cfg.src in CURATED_SOURCES,
            split_of=lambda song_id: split_of(song_id, cfg.splits))
        song_stage.write_songs(out, table)
    corpus.rejected.clear()  # the pairing crawl finds them again
    return song_stage.grouped_songs(corpus, cfg.limit, pq.read_table(path), cfg.keep,
                                    together=cfg.task == "version2version")


def _partitions(songs, cfg: BuildConfig):
    batch: list[Song] = []
    for song in songs:
        batch.append(song)
        if len(batch) == cfg.songs_per_shard:
            yield batch
            batch = []
    if batch:
        yield batch


def _finish(cfg: BuildConfig, out: Path, corpus, n_partitions: int,
            seconds: float) -> dict[str, Any]:
    records = [json.loads((out / RECORDS / f"part-{i:05d}.json").read_text())
               for i in range(n_partitions)]
    rejects = [_reject(r.file, r.song_id, "crawl", r.reason) for r in corpus.rejected]
    shards = []
    for r in records:
        rejects += r["rejects"]
        shards += r["shards"]
    n_rejected = write_rejects(out / "rejects.parquet", rejects)
    melody_by: dict[str, int] = {}
    for r in records:  # records of builds before melody counts have none
        for by, n in r.get("melody_by", {}).items():
            melody_by[by] = melody_by.get(by, 0) + n
    splits = {s: sum(x["rows"] for x in shards if x["split"] == s) for s in SPLITS}
    dedup = _dedup_summary(cfg, out)
    warnings = _warnings(cfg, records, splits)
    summary = {
        "files": sum(r["files"] for r in records) + len(corpus.rejected),
        # Melody tasks pair a song's files one by one: count songs, not partition entries.
        "songs": dedup["songs"] if dedup else sum(r["songs"] for r in records),
        "pairs": sum(splits.values()),
        "splits": splits,
        "rejected": n_rejected,
        "seconds": round(seconds, 3),
        "out": str(out),
        "dedup": dedup,
        "warnings": warnings,
    }
    manifest = {
        "schema_version": cfg.shard_meta().schema_version,
        "meta": json.loads(cfg.shard_meta().to_json()),
        "config": cfg.to_dict(),
        "corpus": corpus.describe(),
        "counts": {k: summary[k] for k in ("files", "songs", "pairs", "splits", "rejected")},
        # Melody tasks: how each file's melody was found (by name, by content) or why not.
        "melody_by": melody_by if cfg.task in ("melody2accomp", "melody2band") else None,
        # How files were grouped into songs (songs.parquet holds the file-by-file table).
        "dedup": dedup,
        # What a user should look at before training: empty splits, silent channels.
        "warnings": warnings,
        "shards": sorted(shards, key=lambda s: s["path"]),
        "packages": _package_versions(),
        "seconds": summary["seconds"],
    }
    atomic_write_bytes(out / "manifest.json", json.dumps(manifest, indent=2).encode())
    return summary


def _dedup_summary(cfg: BuildConfig, out: Path) -> dict[str, Any] | None:
    path = out / "songs.parquet"
    if not path.is_file():
        return None
    import pyarrow.parquet as pq

    from musicpairs.songs import dedup_summary

    return {"mode": "list" if cfg.groups else cfg.dedup, "threshold": cfg.dedup_threshold,
            "keep": cfg.keep, **dedup_summary(pq.read_table(path))}


# A target channel silent in at least this share of pairs is worth a warning.
SILENT_CHANNEL_SHARE = 0.95


def _warnings(cfg: BuildConfig, records: list[dict], splits: dict[str, int]) -> list[str]:
    """Lines a user should read before training on the dataset."""
    out = []
    total = sum(splits.values())
    if total == 0:
        return ["no pairs at all: see rejects.parquet (musicpairs inspect dataset)"]
    for split, n in splits.items():
        if n == 0:
            out.append(f"split {split} is empty: too few songs for the split fractions "
                       f"{list(cfg.splits)}")
    channels = cfg.shard_meta().target_channels
    sounding = np.zeros(len(channels), np.int64)
    for r in records:  # records of builds before these counts have none
        if len(r.get("target_sounding", [])) == len(channels):
            sounding += np.asarray(r["target_sounding"], np.int64)
    for name, n in zip(channels, sounding.tolist(), strict=True):
        if total - n >= SILENT_CHANNEL_SHARE * total:
            out.append(f"target channel {name} is silent in {100 * (total - n) / total:.0f} % "
                       f"of pairs: the model learns little there")
    return out
