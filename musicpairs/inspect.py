"""Summaries of what musicpairs reads and makes, as plain data and as readable text."""

from __future__ import annotations

import itertools
import json
import re
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from musicpairs.config import RollSpec
from musicpairs.errors import MusicpairsError
from musicpairs.midi import read_midi
from musicpairs.render import ascii_pair, pitch_name, render_pair  # noqa: F401 - re-exported
from musicpairs.roles import assign_roles, choose_melody
from musicpairs.roll import FRAME, ONSET, midi_to_roll, ticks_to_steps
from musicpairs.shards import (
    SPLITS,
    ShardError,
    ShardMeta,
    ShardReader,
    decode_rolls,
    sha256_file,
)


def program_name(program: int) -> str:
    """General MIDI name of a program number (0-127)."""
    import pretty_midi

    return pretty_midi.program_to_instrument_name(program)


def midi_summary(
    path: str | PathLike, *, parser: str = "symusic", spec: RollSpec | None = None
) -> dict[str, Any]:
    """What a MIDI file holds: tracks with roles and families, tempo map, meters, length.

    Returns:
        A JSON-ready dict: ``file``, ``parser``, ``ticks_per_quarter``, ``steps_per_beat``,
        ``length`` (ticks, beats, steps, bars), ``tempos`` and ``time_signatures`` (each
        with tick, step and beat), ``tracks`` (index, name, program, program_name,
        is_drum, notes, pitch_range, role, role_by, lpd5, lpd17, melody_probability:
        the melody classifier's, by content; None for tracks that cannot be the melody).

    Raises:
        MidiReadError: The file cannot be read.
    """
    spec = spec or RollSpec()
    score = read_midi(path, parser=parser)
    roll = midi_to_roll(score, spec)
    choice = choose_melody(roll)
    roles = assign_roles(roll, choice=choice)
    tpq, spb = score.ticks_per_quarter, spec.steps_per_beat

    def when(tick: int) -> dict[str, Any]:
        return {"tick": tick, "step": ticks_to_steps(tick, tpq, spb), "beat": tick / tpq}

    tracks = []
    for k, r in enumerate(roles):
        t = score.tracks[roll.score_tracks[k]]
        tracks.append({
            "index": k,
            "name": t.name,
            "program": t.program,
            "program_name": "Drum kit" if t.is_drum else program_name(t.program),
            "is_drum": t.is_drum,
            "notes": len(t.notes),
            "pitch_range": [int(t.notes.pitch.min()), int(t.notes.pitch.max())],
            "role": r.role,
            "role_by": r.by,
            "lpd5": r.lpd5,
            "lpd17": r.lpd17,
            "melody_probability": (round(float(choice.probabilities[k]), 3)
                                   if choice.probabilities[k] > 0 else None),
        })
    return {
        "file": str(Path(path)),
        "parser": parser,
        "ticks_per_quarter": tpq,
        "steps_per_beat": spb,
        "length": {
            "ticks": score.end_tick,
            "beats": score.end_tick / tpq,
            "steps": roll.n_steps,
            "bars": len(roll.downbeats),
        },
        "tempos": [{**when(x.time), "qpm": round(x.qpm, 3), "mspq": x.mspq} for x in score.tempos],
        "time_signatures": [
            {**when(x.time), "numerator": x.numerator, "denominator": x.denominator}
            for x in score.time_signatures
        ],
        "tracks": tracks,
    }


def format_midi_summary(summary: dict[str, Any], max_changes: int = 8) -> str:
    """Render :func:`midi_summary` as a table for the terminal."""
    length = summary["length"]
    lines = [
        f"{summary['file']}  ({summary['parser']})",
        f"ticks per quarter {summary['ticks_per_quarter']}, "
        f"{summary['steps_per_beat']} steps per beat; length {length['beats']:g} beats = "
        f"{length['steps']} steps, {length['bars']} bars",
        "tempo  " + _changes(
            [f"{x['qpm']:g} qpm @ beat {x['beat']:g}" for x in summary["tempos"]], max_changes),
        "meter  " + _changes(
            [f"{x['numerator']}/{x['denominator']} @ beat {x['beat']:g}"
             for x in summary["time_signatures"]], max_changes),
        "",
    ]
    header = ["#", "name", "program", "drum", "notes", "pitches", "role", "melody p", "LPD-5",
              "LPD-17"]
    rows = [
        [
            str(t["index"]),
            t["name"].strip() or "-",
            f"{t['program']} {t['program_name']}",
            "yes" if t["is_drum"] else "no",
            str(t["notes"]),
            f"{t['pitch_range'][0]}-{t['pitch_range'][1]}",
            f"{t['role']} ({t['role_by']})" if t["role"] != "other" else "other",
            "-" if t.get("melody_probability") is None else f"{t['melody_probability']:.2f}",
            t["lpd5"] or "-",
            t["lpd17"],
        ]
        for t in summary["tracks"]
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    numeric = {0, 4, 7}
    for r in [header, *rows]:
        cells = [c.rjust(w) if i in numeric else c.ljust(w) for i, (c, w) in
                 enumerate(zip(r, widths, strict=True))]
        lines.append("  ".join(cells).rstrip())
    if not rows:
        lines.append("(no tracks with notes)")
    return "\n".join(lines)


def _changes(items: list[str], limit: int) -> str:
    if len(items) <= limit:
        return ", ".join(items)
    return ", ".join(items[:limit]) + f", ... ({len(items)} in all)"


# --------------------------------------------------------------------------------------
# Shards


def _quantiles(values: np.ndarray) -> dict[str, float | None]:
    if not len(values):
        return dict.fromkeys(("min", "p10", "median", "p90", "max"))
    q = np.quantile(values, [0, 0.1, 0.5, 0.9, 1])
    return {k: round(float(x), 4) for k, x in zip(("min", "p10", "median", "p90", "max"), q,
                                                  strict=True)}


CONFIDENCE_BINS = (0.0, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)


class _ChannelStats:
    """Onsets, sounding steps and sounding pitch-steps per channel, summed over rows."""

    def __init__(self, channels: tuple[str, ...]):
        self.channels = channels
        self.rows = 0
        self.onsets = np.zeros(len(channels), np.int64)
        self.sounding = np.zeros(len(channels), np.int64)
        self.pitch_steps = np.zeros(len(channels), np.int64)
        self.empty = np.zeros(len(channels), np.int64)

    def add(self, rolls: np.ndarray) -> None:
        """rolls: uint8 [n, 2 x channels, 128, W]."""
        onsets = np.count_nonzero(rolls[:, ONSET::2], axis=(2, 3))  # [n, C]
        per_step = (rolls[:, FRAME::2] != 0).sum(axis=2, dtype=np.int64)  # [n, C, W]
        self.rows += len(rolls)
        self.onsets += onsets.sum(axis=0)
        self.sounding += (per_step > 0).sum(axis=(0, 2))
        self.pitch_steps += per_step.sum(axis=(0, 2))
        self.empty += (onsets == 0).sum(axis=0)

    def summary(self, steps_per_row: int, steps_per_beat: int) -> dict[str, dict[str, float]]:
        rows = max(self.rows, 1)
        beats_per_row = steps_per_row / steps_per_beat
        return {
            name: {
                "onsets_per_beat": round(float(self.onsets[c]) / rows / beats_per_row, 3),
                "polyphony": round(float(self.pitch_steps[c]) / max(int(self.sounding[c]), 1),
                                   3),
                "sounding": round(float(self.sounding[c]) / rows / steps_per_row, 4),
                "empty_rows": round(float(self.empty[c]) / rows, 4),
            }
            for c, name in enumerate(self.channels)
        }


def shard_summary(path: str | PathLike, *, first: int = 5) -> dict[str, Any]:
    """What a shard holds: metadata, size, songs, confidence, note statistics.

    Reads the shard one row group at a time.

    Returns:
        A JSON-ready dict: ``file``, ``meta`` (the musicpairs metadata), ``rows``,
        ``row_groups``, ``bytes``, ``compression``, ``splits`` (rows per split),
        ``songs``, ``confidence`` (quantiles and a histogram), ``source`` and ``target``
        (per channel: onsets per beat, polyphony = pitches per sounding step, sounding =
        share of steps with a note, empty_rows = share of rows with no onset),
        ``first_rows``.

    Raises:
        ShardError: Not a readable musicpairs shard.
    """
    reader = ShardReader(path)
    meta = reader.meta
    source_stats = _ChannelStats(meta.source_channels)
    target_stats = _ChannelStats(meta.target_channels)
    songs: set[str] = set()
    splits: dict[str, int] = {}
    confidence = []
    first_rows: list[dict[str, Any]] = []
    for g in range(reader.num_row_groups):
        table = reader.read_row_group(g)
        source_stats.add(decode_rolls(table.column("source"), meta.source_shape))
        target_stats.add(decode_rolls(table.column("target"), meta.target_shape))
        songs.update(table.column("song_id").to_pylist())
        for split in table.column("split").to_pylist():
            splits[split] = splits.get(split, 0) + 1
        confidence.append(table.column("confidence").to_numpy())
        if len(first_rows) < first:
            rest = table.select(["pair_id", "song_id", "source_file", "target_file",
                                 "start_beat", "confidence"]).slice(0, first - len(first_rows))
            first_rows += rest.to_pylist()
    conf = np.concatenate(confidence) if confidence else np.zeros(0, np.float32)
    hist, _ = np.histogram(conf, bins=CONFIDENCE_BINS)
    md = reader.file.metadata
    compression = (md.row_group(0).column(md.schema.names.index("source")).compression
                   if md.num_row_groups else None)
    return {
        "file": str(path),
        "meta": json.loads(meta.to_json()),
        "rows": reader.num_rows,
        "row_groups": reader.num_row_groups,
        "bytes": Path(path).stat().st_size,
        "compression": compression,
        "splits": splits,
        "songs": len(songs),
        "confidence": {
            **_quantiles(conf),
            "histogram": [[lo, hi, int(n)] for lo, hi, n in
                          zip(CONFIDENCE_BINS[:-1], CONFIDENCE_BINS[1:], hist, strict=True)],
        },
        "source": source_stats.summary(meta.source_shape[-1], meta.steps_per_beat),
        "target": target_stats.summary(meta.target_shape[-1], meta.steps_per_beat),
        "first_rows": [{**r, "confidence": round(float(r["confidence"]), 4)}
                       for r in first_rows],
    }


def format_shard_summary(s: dict[str, Any]) -> str:
    """Render :func:`shard_summary` for the terminal."""
    meta = s["meta"]
    conf = s["confidence"]
    lines = [
        s["file"],
        f"task {meta['task']}, {meta['steps_per_beat']} steps per beat, schema "
        f"v{meta['schema_version']}",
        f"source {meta['dtype']}{list(meta['source_shape'])} "
        f"({', '.join(meta['source_channels'])})",
        f"target {meta['dtype']}{list(meta['target_shape'])} "
        f"({', '.join(meta['target_channels'])})",
        f"{s['rows']} rows in {s['row_groups']} row group{'s' if s['row_groups'] != 1 else ''}"
        f", {s['songs']} songs, "
        f"{_size(s['bytes'])} ({s['compression']}, "
        f"{s['bytes'] / max(s['rows'], 1):,.0f} B/row); splits "
        + ", ".join(f"{k} {v}" for k, v in s["splits"].items()),
    ]
    if s["rows"]:
        lines.append(
            f"confidence min {conf['min']:.3f}, p10 {conf['p10']:.3f}, median "
            f"{conf['median']:.3f}, p90 {conf['p90']:.3f}, max {conf['max']:.3f}")
        lines.append("  " + "  ".join(f"[{lo:g},{hi:g}{']' if hi == 1 else ')'} {n}"
                                      for lo, hi, n in conf["histogram"] if n))
    lines += ["", "side    channel          onsets/beat  polyphony  sounding  empty rows"]
    for side in ("source", "target"):
        for name, c in s[side].items():
            lines.append(f"{side:<7} {name:<16} {c['onsets_per_beat']:>11.2f}  "
                         f"{c['polyphony']:>9.2f}  {100 * c['sounding']:>7.1f}%  "
                         f"{100 * c['empty_rows']:>9.1f}%")
    if s["first_rows"]:
        lines += ["", "first rows:"]
        for r in s["first_rows"]:
            files = r["source_file"] if r["source_file"] == r["target_file"] else \
                f"{r['source_file']} -> {r['target_file']}"
            lines.append(f"  {r['pair_id']}  song {r['song_id']}  beat {r['start_beat']:g}  "
                         f"conf {r['confidence']:.3f}  {files}")
    return "\n".join(lines)


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def read_row(path: str | PathLike, *, row: int | None = None,
             pair_id: str | None = None) -> tuple[ShardMeta, dict[str, Any]]:
    """One row of a shard, by index (default 0) or by pair id.

    Returns:
        (the shard's metadata, the row: its columns, ``source`` and ``target`` as uint8
        arrays, and ``row`` its index).

    Raises:
        ShardError: Not a shard, the row is out of range, or no row has that pair id.
    """
    reader = ShardReader(path)
    if pair_id is not None:
        offset = 0
        for g in range(reader.num_row_groups):
            ids = reader.read_row_group(g, columns=["pair_id"]).column("pair_id").to_pylist()
            if pair_id in ids:
                i = ids.index(pair_id)
                got = next(itertools.islice(reader.decode(reader.read_row_group(g)), i, None))
                return reader.meta, {**got, "row": offset + i}
            offset += len(ids)
        raise ShardError(f"{path}: no row has pair_id {pair_id!r}")
    row = 0 if row is None else row
    if not 0 <= row < reader.num_rows:
        raise ShardError(f"{path}: row {row} is out of range (the shard has {reader.num_rows} "
                         f"rows: 0-{reader.num_rows - 1})")
    offset = 0
    for g in range(reader.num_row_groups):
        n = reader.file.metadata.row_group(g).num_rows
        if row < offset + n:
            got = next(itertools.islice(reader.decode(reader.read_row_group(g)), row - offset,
                                        None))
            return reader.meta, {**got, "row": row}
        offset += n
    raise ShardError(f"{path}: row {row} not found")  # the metadata lied about its rows


# --------------------------------------------------------------------------------------
# Datasets


class DatasetError(MusicpairsError):
    """A folder is not a (finished) musicpairs dataset; the message says why."""


def load_manifest(root: str | PathLike) -> dict[str, Any]:
    """A dataset's manifest.

    Raises:
        DatasetError: No readable manifest.json.
    """
    path = Path(root) / "manifest.json"
    if not Path(root).is_dir():
        raise DatasetError(f"{root}: no such folder")
    if not path.is_file():
        hint = (" (the build did not finish: run it again with --resume)"
                if (Path(root) / "config.json").is_file() else " (not a musicpairs dataset)")
        raise DatasetError(f"{root}: no manifest.json{hint}")
    try:
        manifest = json.loads(path.read_text())
        manifest["shards"], manifest["counts"]  # noqa: B018 - the keys every manifest has
    except (ValueError, KeyError, TypeError) as e:
        raise DatasetError(f"{path}: unreadable manifest ({type(e).__name__}: {e})") from e
    return manifest


def _reason_kind(reason: str) -> str:
    """A reject reason without its particulars (numbers, file names), to group by."""
    kind = re.sub(r"\b[\w./-]+\.(mid|midi|kar|smf)\b", "FILE", reason)
    kind = re.sub(r"b'[^']*'", "CHUNK", kind)
    return re.sub(r"(?<![\w.])-?\d+(\.\d+)?\b", "N", kind)


def dataset_summary(root: str | PathLike, *, examples: int = 3) -> dict[str, Any]:
    """A dataset at a glance: rows, songs and bytes per split, rejects by reason, config.

    Returns:
        A JSON-ready dict: ``root``, ``task``, ``meta``, ``counts``, ``melody_by`` (melody
        tasks: files whose melody was found by name, by content, or not), ``splits`` (per
        split: shards, rows, songs, bytes), ``songs`` (the manifest's ``dedup``: how files
        were grouped into songs, the largest songs), ``warnings`` (empty splits, silent
        target channels), ``rejects`` (``total`` and
        ``groups``: stage, kind, count, examples of file and reason), ``config``,
        ``corpus``, ``seconds``, ``packages``.

    Raises:
        DatasetError: No manifest.
        ShardError: A shard is missing or unreadable.
    """
    root = Path(root)
    manifest = load_manifest(root)
    splits = {}
    for split in SPLITS:
        shards = [s for s in manifest["shards"] if s["split"] == split]
        songs: set[str] = set()
        for s in shards:
            reader = ShardReader(root / s["path"])
            for g in range(reader.num_row_groups):
                songs.update(reader.read_row_group(g, ["song_id"]).column("song_id")
                             .to_pylist())
        splits[split] = {"shards": len(shards), "rows": sum(s["rows"] for s in shards),
                         "songs": len(songs), "bytes": sum(s["bytes"] for s in shards)}
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    rejects_path = root / "rejects.parquet"
    total = 0
    if rejects_path.is_file():
        for r in pq.read_table(rejects_path).to_pylist():
            total += 1
            key = (r["stage"], _reason_kind(r["reason"]))
            g = groups.setdefault(key, {"stage": key[0], "kind": key[1], "count": 0,
                                        "examples": []})
            g["count"] += 1
            if len(g["examples"]) < examples:
                g["examples"].append({"file": r["file"], "reason": r["reason"]})
    return {
        "root": str(root),
        "task": manifest.get("meta", {}).get("task"),
        "meta": manifest.get("meta", {}),
        "counts": manifest["counts"],
        "melody_by": manifest.get("melody_by"),
        "songs": manifest.get("dedup"),
        "warnings": manifest.get("warnings") or [],
        "splits": splits,
        "rejects": {"total": total,
                    "groups": sorted(groups.values(), key=lambda g: (-g["count"], g["kind"]))},
        "config": manifest.get("config", {}),
        "corpus": manifest.get("corpus", {}),
        "seconds": manifest.get("seconds"),
        "packages": manifest.get("packages", {}),
    }


def format_dataset_summary(s: dict[str, Any]) -> str:
    """Render :func:`dataset_summary` for the terminal."""
    meta, counts = s["meta"], s["counts"]
    lines = [
        f"{s['root']}: {s['task']}, source {meta.get('source_shape')} "
        f"({', '.join(meta.get('source_channels', []))}), target {meta.get('target_shape')} "
        f"({', '.join(meta.get('target_channels', []))})",
        f"{counts['files']} files, {counts['songs']} songs -> {counts['pairs']} pairs; "
        f"{counts['rejected']} rejected" + (f"; built in {s['seconds']:.1f} s"
                                            if s.get("seconds") is not None else ""),
        "",
        "split   shards     rows   songs       size",
    ]
    for split, x in s["splits"].items():
        lines.append(f"{split:<6} {x['shards']:>7} {x['rows']:>8} {x['songs']:>7} "
                     f"{_size(x['bytes']):>10}")
    if s.get("melody_by"):
        lines += ["", "melody found: " + ", ".join(
            f"{n} {'by ' if by in ('name', 'content') else ''}{by}"
            for by, n in sorted(s["melody_by"].items(), key=lambda x: -x[1]))]
    if s.get("warnings"):
        lines += ["", "warnings:"] + [f"  {w}" for w in s["warnings"]]
    d = s.get("songs")
    if d:
        lines += ["", f"songs ({d['mode']}): {d['songs']} from {d['files']} files; "
                  f"{d['files_in_shared_songs']} files in songs of several; "
                  f"{d['cross_song_copies']} copies across songs (songs.parquet)"]
        lines += [f"  {n:>6}  {song}" for song, n in d["largest"]]
    if s["rejects"]["groups"]:
        lines += ["", f"rejects ({s['rejects']['total']}):"]
        for g in s["rejects"]["groups"]:
            lines.append(f"  {g['count']:>6}  {g['stage']}: {g['kind']}")
            for ex in g["examples"]:
                lines.append(f"          e.g. {ex['file']}: {ex['reason']}")
    cfg = s["config"]
    if cfg:
        lines += ["", "config: " + ", ".join(
            f"{k}={v}" for k, v in cfg.items() if v is not None and k != "out")]
    return "\n".join(lines)


def verify_dataset(root: str | PathLike) -> list[str]:
    """Check every shard in the manifest against its recorded sha256, size and presence.

    Returns:
        One line per problem (empty when all is well).

    Raises:
        DatasetError: No manifest.
    """
    root = Path(root)
    problems = []
    for s in load_manifest(root)["shards"]:
        path = root / s["path"]
        if not path.is_file():
            problems.append(f"{s['path']}: missing")
            continue
        digest = sha256_file(path)
        if digest != s["sha256"]:
            problems.append(f"{s['path']}: sha256 {digest} does not match the manifest's "
                            f"{s['sha256']}")
    return problems
