"""``evaluate --report``: one self-contained HTML page of an evaluation.

The page holds the scores of every system as tables; for a few example pairs, the piano
roll of the source, of each system's output and of the real target, each with an audio
player (the source with that output, synthesized with a General MIDI SoundFont, see
:mod:`musicpairs.audio`); and the training curves of the model's run when its
``metrics.jsonl`` is at hand. Images and audio are embedded as ``data:`` URIs, so the
page is one file that opens anywhere, offline.
"""

from __future__ import annotations

import base64
import html
import io
import os
from pathlib import Path
from typing import Any

import numpy as np

from musicpairs.roll import FRAME
from musicpairs.shards import ShardMeta

#: The players' sample rate: the page embeds every clip, so it is kept small.
SAMPLE_RATE = 16000
#: Overall and per-channel scores shown, as (column, key).
OVERALL = (("frame P", "frame_precision"), ("frame R", "frame_recall"),
           ("frame F1", "frame_f1"), ("Bay acc", "frame_accuracy"), ("onset F1", "onset_f1"),
           ("poly TV", "polyphony_tv"), ("length TV", "note_length_tv"))
CHANNEL = (("notes", "notes"), ("EB", "empty_bars"), ("UPC", "pitch_classes_per_bar"),
           ("QN", "qualified_notes"), ("TD", "tonal_distance"))


def _data_uri(kind: str, data: bytes) -> str:
    return f"data:{kind};base64,{base64.b64encode(data).decode('ascii')}"


def roll_png(frames: np.ndarray, lo: int, hi: int, steps_per_beat: int, *,
             dpi: int = 80) -> bytes:
    """A small PNG of one roll's frames [128, W] (pitches lo..hi), beats ruled."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    width = frames.shape[-1]
    fig = Figure(figsize=(4.2, 1.4), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(np.ma.masked_equal(frames[lo : hi + 1].astype(float), 0), origin="lower",
              aspect="auto", cmap="viridis", vmin=0, vmax=127, interpolation="nearest",
              extent=(-0.5, width - 0.5, lo - 0.5, hi + 0.5))
    for beat in range(0, width, steps_per_beat):
        ax.axvline(beat - 0.5, color="#ccc" if beat % (4 * steps_per_beat) else "#888",
                   lw=0.5, zorder=0)
    ax.set_xticks([])
    ax.set_yticks([])
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _number(value) -> str:
    if value is None:
        return "–"
    return str(value) if isinstance(value, int) else f"{value:.3f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def write_report(result: dict[str, Any], meta: ShardMeta, shown: list[dict[str, Any]],
                 systems: list[str], out: str | os.PathLike, *,
                 soundfont: str | os.PathLike | None = None,
                 run: str | os.PathLike | None = None) -> dict[str, Any]:
    """Write ``out`` (report.html) for an evaluation.

    Args:
        result: What :func:`~musicpairs.model.evaluate.evaluate` returns.
        meta: The dataset's shard metadata.
        shown: Example pairs: ``pair_id``, ``source``, ``real`` and each system's output
            (uint8 planes).
        systems: The systems drawn, in order.
        soundfont: The SoundFont for the players; None: audio is left out (the page
            says so) and ``audio_error`` in the return says why.
        run: The model's run folder; its ``metrics.jsonl`` is drawn when there.

    Returns:
        ``{"report": path, "images": n, "audio": n, "audio_error": str | None}``.
    """
    from musicpairs.audio import AudioError, find_soundfont, synthesize, wav_bytes
    from musicpairs.midi import score_to_midi_bytes
    from musicpairs.pairing import pair_to_score
    from musicpairs.render import _pitch_range

    audio_error = None
    try:
        font = find_soundfont(soundfont)
    except AudioError as e:
        font, audio_error = None, str(e)
    images = players = 0
    parts = [f"<h1>musicpairs evaluation: {html.escape(result['task'])}</h1>",
             f"<p>{result['windows']} windows of the {html.escape(result['split'])} split of "
             f"<code>{html.escape(result['data'])}</code>.</p>"]
    entries = result["systems"]
    parts.append("<h2>Scores</h2>")
    parts.append(_table(["system", "kind", *[c for c, _ in OVERALL]],
                        [[name, s["kind"], *[_number(s["overall"].get(k)) for _, k in OVERALL]]
                         for name, s in entries.items()]))
    for channel in meta.target_channels:
        parts.append(f"<h3>{html.escape(channel)}</h3>")
        parts.append(_table([channel, *[c for c, _ in CHANNEL]],
                            [[name, *[_number(s["channels"][channel].get(k)) for _, k in CHANNEL]]
                             for name, s in entries.items()]))
    parts.append("<p class=note>" + "<br>".join(html.escape(f"{name}: {s['description']}")
                                                for name, s in entries.items()) + "</p>")

    parts.append("<h2>Examples</h2>")
    if font is None:
        parts.append(f"<p class=note>No audio: {html.escape(audio_error)}</p>")
    rows = ["source", "real", *systems]
    for example in shown:
        frames = {name: example[name][FRAME::2].max(0) for name in rows}
        lo, hi = _pitch_range(np.stack([frames["source"], frames["real"]]), span=36)
        parts.append(f"<h3>{html.escape(str(example['pair_id']))}</h3><div class=grid>")
        for name in rows:
            png = roll_png(frames[name], lo, hi, meta.steps_per_beat)
            images += 1
            cell = (f"<figure><figcaption>{html.escape(name)}</figcaption>"
                    f"<img alt='{html.escape(name)} piano roll' "
                    f"src='{_data_uri('image/png', png)}'>")
            if font is not None:
                # What one listens to: the source alone, or the source with a target.
                target = (np.zeros_like(example["real"]) if name == "source"
                          else example[name])
                midi = score_to_midi_bytes(pair_to_score(meta, example["source"], target))
                wav = _data_uri("audio/wav", wav_bytes(
                    synthesize(midi, font, sample_rate=SAMPLE_RATE), SAMPLE_RATE))
                cell += f"<audio controls preload='auto' src='{wav}'></audio>"
                players += 1
            parts.append(cell + "</figure>")
        parts.append("</div>")

    curves = Path(run) / "metrics.jsonl" if run is not None else None
    if curves is not None and curves.is_file():
        from musicpairs.errors import MusicpairsError
        from musicpairs.model.curves import plot_curves

        try:
            buffer = Path(out).with_name(".curves.tmp.png")
            plot_curves(curves, buffer)
            png = _data_uri("image/png", buffer.read_bytes())
            parts.append(f"<h2>Training curves</h2><img alt='training curves' src='{png}'>")
            buffer.unlink()
            images += 1
        except MusicpairsError as e:
            parts.append(f"<p class=note>No training curves: {html.escape(str(e))}</p>")

    page = ("<!doctype html><html lang=en><head><meta charset=utf-8>"
            f"<title>musicpairs evaluation: {html.escape(result['task'])}</title><style>"
            "body{font:14px system-ui,sans-serif;margin:2em;max-width:1400px}"
            "table{border-collapse:collapse;margin:.5em 0}"
            "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}"
            "td:first-child,th:first-child{text-align:left}"
            ".grid{display:flex;flex-wrap:wrap;gap:12px}"
            "figure{margin:0}figcaption{font-weight:600}audio{display:block;width:336px}"
            ".note{color:#555}</style></head><body>" + "\n".join(parts) + "</body></html>\n")
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(out)
    return {"report": str(out), "images": images, "audio": players, "audio_error": audio_error}
