"""Pictures of pairs: a PNG of every channel (matplotlib) and an ASCII sketch."""

from __future__ import annotations

from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from musicpairs.roll import FRAME, ONSET
from musicpairs.shards import ShardMeta


def pitch_name(pitch: int) -> str:
    """Scientific pitch name with MIDI 60 = C4."""
    return ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")[pitch % 12] + \
        str(pitch // 12 - 1)


def _pitch_range(planes: np.ndarray, span: int = 24) -> tuple[int, int]:
    """The sounding pitches, widened to at least ``span`` semitones (low, high inclusive)."""
    used = np.flatnonzero(planes.any(axis=(0, 2)))
    if not len(used):
        return 48, 48 + span - 1
    low, high = int(used[0]), int(used[-1])
    if high - low + 1 < span:
        mid = (low + high) // 2
        low = max(0, min(mid - span // 2, 128 - span))
        high = low + span - 1
    return max(0, low - 1), min(127, high + 1)


def render_pair(meta: ShardMeta, row: dict[str, Any], out: str | PathLike, *,
                dpi: int = 110) -> Path:
    """Draw a pair as a PNG: every source and target channel stacked, time across.

    Frames are shaded by velocity, onsets marked, beats ruled (every 4th from the window's
    first downbeat darker: a pair does not carry its meter), the
    pitch axis labelled at each C.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    spb = meta.steps_per_beat
    panels = []
    for side, planes, channels in (("source", row["source"], meta.source_channels),
                                   ("target", row["target"], meta.target_channels)):
        for c, name in enumerate(channels):
            p = planes[2 * c : 2 * c + 2]
            panels.append((f"{side}: {name}", p, _pitch_range(p)))
    width = row["source"].shape[-1]
    heights = [hi - lo + 1 for _, _, (lo, hi) in panels]
    fig = Figure(figsize=(min(max(8.0, width / 24), 48.0), 1.2 + sum(heights) / 14), dpi=dpi)
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False,
                        gridspec_kw={"height_ratios": heights})[:, 0]
    for ax, (label, planes, (lo, hi)) in zip(axes, panels, strict=True):
        frame = planes[FRAME, lo : hi + 1].astype(float)
        ax.imshow(np.ma.masked_equal(frame, 0), origin="lower", aspect="auto",
                  cmap="viridis", vmin=0, vmax=127, interpolation="nearest",
                  extent=(-0.5, width - 0.5, lo - 0.5, hi + 0.5))
        pitch, step = np.nonzero(planes[ONSET, lo : hi + 1])
        ax.scatter(step - 0.5, pitch + lo, marker="|", s=18, c="#d62728", linewidths=1.2)
        for s in range(0, width + 1, spb):
            bar = s % (4 * spb) == 0
            ax.axvline(s - 0.5, color="#444" if bar else "#ccc", lw=0.9 if bar else 0.4,
                       zorder=0 if not bar else 1)
        cs = [p for p in range(lo, hi + 1) if p % 12 == 0]
        ax.set_yticks(cs, [pitch_name(p) for p in cs])
        ax.set_yticks(range(lo, hi + 1), minor=True)
        ax.tick_params(axis="y", which="minor", length=0)
        ax.set_ylim(lo - 0.5, hi + 0.5)
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
        ax.set_facecolor("white")
    bars = range(0, width, 4 * spb * max(1, width // 1024))  # labels: bars, or every k-th
    start = row.get("start_beat", 0.0)
    axes[-1].set_xticks([b - 0.5 for b in bars], [f"{start + b / spb:g}" for b in bars])
    axes[-1].set_xlim(-0.5, width - 0.5)
    axes[-1].set_xlabel("beat (lines: beats, every 4th darker from the window's first "
                       "downbeat; red ticks: onsets)")
    conf = row.get("confidence", 1.0)
    files = row.get("source_file", "")
    if row.get("target_file") and row.get("target_file") != files:
        files += f" -> {row['target_file']}"
    fig.suptitle(row.get("title") or f"{meta.task}  pair {row.get('pair_id', '')}  song "
                 f"{row.get('song_id', '')}  {files}  confidence {conf:.3f}", fontsize=9)
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, format="png")
    return out


def ascii_pair(meta: ShardMeta, row: dict[str, Any], *, width: int = 128) -> str:
    """A compact piano roll for the terminal: one row per pitch in use, per channel.

    ``o`` an onset in the cell, ``=`` sounding, ``|`` every 4th beat from the window's
    first downbeat (a pair does not carry its meter), ``.`` a beat, blank silence; each
    character covers 1, 2, 4... steps, the fewest that fit a line in ``width``
    characters.
    """
    spb = meta.steps_per_beat
    steps = row["source"].shape[-1]
    # Steps per character: 1, 2, 4... so that cells never straddle a beat unevenly.
    per_char = 1
    while -(-steps // per_char) > width:
        per_char *= 2
    n_cells = -(-steps // per_char)
    pad = n_cells * per_char - steps
    lines = [f"pair {row.get('pair_id', '')}  song {row.get('song_id', '')}  beat "
             f"{row.get('start_beat', 0):g}  ({per_char} step{'s' if per_char > 1 else ''} "
             "per character; | every 4 beats from the first downbeat, . a beat)"]
    grid = []
    for cell in range(n_cells):
        s = cell * per_char
        bar = any((s + i) % (4 * spb) == 0 for i in range(per_char))
        beat = any((s + i) % spb == 0 for i in range(per_char))
        grid.append("|" if bar else "." if beat else " ")
    for side, planes, channels in (("source", row["source"], meta.source_channels),
                                   ("target", row["target"], meta.target_channels)):
        for c, name in enumerate(channels):
            p = np.pad(planes[2 * c : 2 * c + 2], ((0, 0), (0, 0), (0, pad)))
            cells = p.reshape(2, 128, n_cells, per_char).max(axis=3)
            used = np.flatnonzero(cells[FRAME].any(axis=1) | cells[ONSET].any(axis=1))
            lines.append(f"{side}: {name}" + ("" if len(used) else " (silent)"))
            for pitch in used[::-1]:
                chars = ["o" if cells[ONSET, pitch, i] else "=" if cells[FRAME, pitch, i]
                         else grid[i] for i in range(n_cells)]
                lines.append(f"{pitch_name(int(pitch)):>4} " + "".join(chars).rstrip())
    return "\n".join(lines)


