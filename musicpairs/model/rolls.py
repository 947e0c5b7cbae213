"""Rolls in and out of the networks: uint8 velocities <-> [-1, 1], and generated rolls
back to valid onset + frame planes.

The networks see ``velocity / 63.5 - 1``: silence is -1, velocity 127 is +1. A generated
roll is continuous; :func:`generated_to_planes` reads notes from it with two velocity
thresholds and paints them back as planes that follow the data contract (a note's onset
and frame carry its velocity), so they decode to notes and MIDI exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from musicpairs.roll import FRAME, ONSET, _paint, planes_to_notes

#: Velocity (of 127) from which a generated frame counts as sounding, and a generated
#: onset inside a sounding run as a new note (restrike), unless thresholds are given.
FRAME_THRESHOLD = 16
ONSET_THRESHOLD = 32


def to_model(rolls: torch.Tensor) -> torch.Tensor:
    """uint8 rolls (..., 128, W) -> float32 in [-1, 1] (0 -> -1, 127 -> 1)."""
    return rolls.float().mul_(1 / 63.5).sub_(1)


def to_velocity(x: torch.Tensor) -> torch.Tensor:
    """Network output in [-1, 1] -> float velocities in [0, 127]."""
    return (x.float() + 1).mul_(63.5).clamp_(0, 127)


def onset_peaks(onset):
    """The onset plane (numpy or torch, time last) where it peaks in time, else 0.

    A generated onset counts only at a peak (higher than the step before, at least as
    high as the step after): a plane that stays high over a note would otherwise cut it
    into one-step notes.
    """
    peak = onset > 0
    peak[..., 1:] &= onset[..., 1:] > onset[..., :-1]
    peak[..., :-1] &= onset[..., :-1] >= onset[..., 1:]
    return onset * peak


def generated_to_planes(velocity: np.ndarray, *,
                        frame_threshold: float | Sequence[float] = FRAME_THRESHOLD,
                        onset_threshold: float | Sequence[float] = ONSET_THRESHOLD
                        ) -> np.ndarray:
    """Valid planes from generated velocities.

    A step sounds where the frame plane reaches ``frame_threshold``. A note starts
    where a sounding run starts, and inside a run where the onset plane peaks (see
    :func:`onset_peaks`) at ``onset_threshold`` or more (a restrike); it lasts while
    the frame sounds, up to the next start. Its velocity is the onset plane's at its
    start when that peaks at the threshold or more, else the frame's (at least 1).

    Args:
        velocity: float [2 * channels, 128, W] (onset, frame per channel), 0-127.
        frame_threshold, onset_threshold: One for every channel, or one per channel.

    Returns:
        uint8 [2 * channels, 128, W]: planes as the data contract makes them.
    """
    channels = velocity.shape[0] // 2
    frame_at = np.broadcast_to(np.asarray(frame_threshold, float), (channels,))
    onset_at = np.broadcast_to(np.asarray(onset_threshold, float), (channels,))
    out = np.zeros((channels, 2, *velocity.shape[1:]), np.uint8)
    for c in range(channels):
        onset, frame = velocity[2 * c + ONSET], velocity[2 * c + FRAME]
        sounding = frame >= frame_at[c]
        struck = sounding & (onset_peaks(onset) >= onset_at[c])
        planes = np.zeros((2, *frame.shape), np.uint8)
        level = np.clip(np.rint(np.where(struck, onset, frame)), 1, 127).astype(np.uint8)
        planes[ONSET] = np.where(struck, level, 0)
        planes[FRAME] = np.where(sounding, level, 0)
        notes = planes_to_notes(planes)
        _paint(out[c : c + 1], np.zeros(len(notes.start), np.int64), notes.start, notes.end,
               notes.pitch, notes.velocity)
    return out.reshape(velocity.shape)


def decode_generated(velocity: np.ndarray, decode: dict[str, Any] | None) -> np.ndarray:
    """Generated velocities -> valid uint8 planes, with a checkpoint's ``decode`` entry
    (thresholds per channel tuned on the valid split while training), or the default
    thresholds when it has none.

    Args:
        velocity: float [Ct, 128, W], or a batch [B, Ct, 128, W].
    """
    if velocity.ndim == 4:
        return np.stack([decode_generated(v, decode) for v in velocity])
    if not decode:
        return generated_to_planes(velocity)
    per_channel = decode["channels"]
    return generated_to_planes(
        velocity, frame_threshold=[float(c["frame_threshold"]) for c in per_channel],
        onset_threshold=[float(c["onset_threshold"]) for c in per_channel])
