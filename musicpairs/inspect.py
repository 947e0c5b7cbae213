"""Summaries of what musicpairs reads and makes, as plain data and as readable text."""

from __future__ import annotations

from os import PathLike
from pathlib import Path
from typing import Any

from musicpairs.config import RollSpec
from musicpairs.midi import read_midi
from musicpairs.roles import assign_roles
from musicpairs.roll import midi_to_roll, ticks_to_steps


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
        is_drum, notes, pitch_range, role, role_by, lpd5, lpd17).

    Raises:
        MidiReadError: The file cannot be read.
    """
    spec = spec or RollSpec()
    score = read_midi(path, parser=parser)
    roll = midi_to_roll(score, spec)
    roles = assign_roles(roll)
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
    header = ["#", "name", "program", "drum", "notes", "pitches", "role", "LPD-5", "LPD-17"]
    rows = [
        [
            str(t["index"]),
            t["name"].strip() or "-",
            f"{t['program']} {t['program_name']}",
            "yes" if t["is_drum"] else "no",
            str(t["notes"]),
            f"{t['pitch_range'][0]}-{t['pitch_range'][1]}",
            f"{t['role']} ({t['role_by']})" if t["role"] != "other" else "other",
            t["lpd5"] or "-",
            t["lpd17"],
        ]
        for t in summary["tracks"]
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    numeric = {0, 4}
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
