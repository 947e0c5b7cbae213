"""``convert``: a user's MIDI file through a trained generator, into a new arrangement.

The song is laid on the checkpoint's grid, the source channels the task needs are taken
from it (the melody, found by role unless named), the generator runs over windows of the
checkpoint's width that start on downbeats and overlap by half (by default), and the
overlaps are blended (each window's output weighs most at its middle and least at its
edges) before the generated onset, frame and velocity planes are decoded to notes with
the checkpoint's decoding settings. The written MIDI keeps the input's time division,
tempo map, time signatures and source tracks exactly as they were (the melody's notes
in their own ticks), and adds one track per generated channel, named after it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from musicpairs.config import RollSpec
from musicpairs.errors import MusicpairsError
from musicpairs.midi import Notes, Score, Track, read_midi, write_midi
from musicpairs.model.evaluate import Generator
from musicpairs.model.rolls import PLANES, decode_probabilities
from musicpairs.pairing import CHANNEL_PROGRAMS, merge_tracks
from musicpairs.roles import assign_roles
from musicpairs.roll import ONSET, midi_to_roll, planes_to_notes

log = logging.getLogger(__name__)


class ConvertError(MusicpairsError):
    """A file cannot be converted as asked (no melody, nothing to convert...)."""


def window_starts(downbeats: np.ndarray, n_steps: int, width: int, hop: int) -> list[int]:
    """Starts of windows of ``width`` steps that cover ``0 .. n_steps``: the first at 0,
    each next one on the first downbeat at least ``hop`` after the previous start (as
    the dataset's windows are cut), or at exactly ``hop`` after it when no downbeat comes
    before the previous window ends."""
    if not 1 <= hop <= width:
        raise ValueError(f"hop must be in 1..{width}, not {hop}")
    starts = [0]
    while starts[-1] + width < n_steps:
        low, high = starts[-1] + hop, starts[-1] + width - 1
        later = downbeats[(downbeats >= low) & (downbeats <= high)]
        starts.append(int(later[0]) if len(later) else low)
    return starts


def blend_weights(width: int) -> np.ndarray:
    """A window's weight per step when overlaps are blended: a triangle, 1 at both
    edges and ``width / 2`` in the middle."""
    t = np.arange(width)
    return np.minimum(t + 1, width - t).astype(np.float32)


def source_tracks(score: Score, roll, task: str, melody_track: int | None,
                  label: str) -> list[int]:
    """Score indices of the tracks that make the source channel."""
    if task == "version2version":
        if melody_track is not None:
            raise ConvertError(f"{label}: --melody-track is for melody tasks; this checkpoint "
                               "converts version2version (its source is every pitched track)")
        tracks = [i for i, t in enumerate(score.tracks) if not t.is_drum and len(t.notes)]
        if not tracks:
            raise ConvertError(f"{label}: no pitched notes to convert")
        return tracks
    if melody_track is not None:
        if not 0 <= melody_track < len(score.tracks):
            raise ConvertError(f"{label}: no track {melody_track} (the file has "
                               f"{len(score.tracks)} tracks with notes, 0.."
                               f"{len(score.tracks) - 1}; see musicpairs inspect midi)")
        track = score.tracks[melody_track]
        if track.is_drum or not len(track.notes):
            raise ConvertError(f"{label}: track {melody_track} ({track.name or 'unnamed'}) is "
                               f"{'a drum track' if track.is_drum else 'empty'}, not a melody")
        return [melody_track]
    roles = assign_roles(roll)
    melody = next((k for k, r in enumerate(roles) if r.role == "melody"), None)
    if melody is None:
        raise ConvertError(f"{label}: no usable melody track (none is mostly monophonic with "
                           "enough notes); name one with --melody-track N")
    return [roll.score_tracks[melody]]


def convert(checkpoint: str | os.PathLike, midi_in: str | os.PathLike,
            midi_out: str | os.PathLike, *, melody_track: int | None = None,
            hop: int | None = None, render: str | os.PathLike | None = None,
            device: str = "auto", batch_size: int = 16,
            generator: Generator | None = None) -> dict[str, Any]:
    """Convert one MIDI file with a checkpoint; write the result (and a PNG with
    ``render``).

    Args:
        checkpoint: A run's ``last.pt`` or ``step-*.pt``.
        midi_in, midi_out: The input file and where to write the converted one.
        melody_track: The melody's index among the input's tracks (as ``musicpairs
            inspect midi`` lists them); found by role when None. Melody tasks only.
        hop: Steps between window starts (default: half the window).
        generator: An already loaded checkpoint (then ``checkpoint`` only labels it).

    Returns:
        A summary: files, task, source tracks, windows, generated notes per channel.

    Raises:
        MidiReadError: The input is not a readable MIDI file.
        ConvertError: No usable melody (or source), or a bad ``melody_track``.
        CheckpointError: The checkpoint cannot be read or does not fit its task.
    """
    from musicpairs.model.train import resolve_device

    model = generator or Generator(checkpoint, resolve_device(device))
    meta = model.meta
    label = str(midi_in)
    score = read_midi(midi_in)
    spb, width = meta.steps_per_beat, meta.source_shape[-1]
    roll = midi_to_roll(score, RollSpec(steps_per_beat=spb))
    chosen = source_tracks(score, roll, meta.task, melody_track, label)
    source = merge_tracks(roll, [roll.score_tracks.index(i) for i in chosen])  # [2, 128, T]
    if not np.count_nonzero(source[ONSET]):
        raise ConvertError(f"{label}: the source tracks have no notes on the grid")
    n_steps = roll.n_steps
    hop = max(1, width // 2) if hop is None else hop
    if not 1 <= hop <= width:
        raise ConvertError(f"{label}: hop {hop} is not in 1..{width} (this checkpoint's "
                           "window)")
    starts = window_starts(roll.downbeats, n_steps, width, hop)

    # Generate every window, then blend: sum(weight * planes) / sum(weight) per step.
    padded = np.zeros((2, 128, starts[-1] + width), np.uint8)
    padded[..., :n_steps] = source
    channels = PLANES * meta.target_shape[0] // 2
    total = np.zeros((channels, 128, padded.shape[-1]), np.float32)
    weight = np.zeros(padded.shape[-1], np.float32)
    w = blend_weights(width)
    for first in range(0, len(starts), batch_size):
        chunk = starts[first : first + batch_size]
        windows = np.stack([padded[..., s : s + width] for s in chunk])
        probs = model.probabilities(torch.from_numpy(windows)).cpu().numpy()  # (n, 3C, 128, W)
        for s, p in zip(chunk, probs, strict=True):
            total[..., s : s + width] += p * w
            weight[s : s + width] += w
    blended = total[..., :n_steps] / weight[:n_steps]
    if model.decode is None:
        log.warning("%s has no decoding thresholds (no valid-split evaluation before it "
                    "was saved): using the defaults", model.path)
    planes = decode_probabilities(blended, model.decode)

    tpq = score.ticks_per_quarter
    tracks = [score.tracks[i] for i in chosen]
    counts = {}
    for c, name in enumerate(meta.target_channels):
        notes = planes_to_notes(planes[2 * c : 2 * c + 2]).sorted()
        counts[name] = len(notes)
        ticks = Notes(_ticks(notes.start, tpq, spb), _ticks(notes.end, tpq, spb), notes.pitch,
                      notes.velocity)
        tracks.append(Track(name, CHANNEL_PROGRAMS.get(name, 0), name == "drums", ticks))
    out = Score(tpq, tracks, list(score.tempos), list(score.time_signatures), str(midi_out))
    write_midi(out, midi_out)
    summary = {
        "input": str(midi_in), "output": str(midi_out), "task": meta.task,
        "checkpoint": str(model.path),
        "source_tracks": [{"index": i, "name": score.tracks[i].name} for i in chosen],
        "steps": n_steps, "windows": len(starts), "window": width, "hop": hop,
        "generated_notes": counts,
        "thresholds": "tuned on valid" if model.decode else "defaults (the checkpoint has none)",
    }
    if render is not None:
        summary["render"] = str(render_conversion(meta, source, planes, Path(midi_in).name,
                                                  render))
    return summary


def _ticks(steps: np.ndarray, tpq: int, spb: int) -> np.ndarray:
    """Grid steps -> ticks at the input's time division (rounded half up)."""
    return (2 * steps.astype(np.int64) * tpq + spb) // (2 * spb)


def render_conversion(meta, source: np.ndarray, generated: np.ndarray, title: str,
                      out: str | os.PathLike) -> Path:
    """The whole converted song as a PNG: the source channel over the generated ones."""
    import dataclasses

    from musicpairs.inspect import render_pair

    n_steps = source.shape[-1]
    shown = dataclasses.replace(
        meta, source_shape=(source.shape[0], 128, n_steps),
        target_shape=(generated.shape[0], 128, n_steps),
        target_channels=tuple(f"{c} (generated)" for c in meta.target_channels))
    return render_pair(shown, {"source": source, "target": generated,
                               "title": f"{title}: {meta.task}"}, out)
