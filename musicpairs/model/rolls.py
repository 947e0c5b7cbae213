"""Rolls in and out of the networks, and generated rolls back to notes.

In: the source planes as ``velocity / 127`` in [0, 1], so silence is 0 and the
convolutions' zero padding reads as silence (not as a note at every border), and, with
``harmony``, one more plane: the pitch classes sounding in the source at each step,
folded across octaves and laid on every octave, so that a 4x4 kernel anywhere on the
pitch axis sees the melody's pitch class.

Out: per target channel, G gives raw outputs that :func:`probabilities` turns into three
planes in [0, 1]: the probability that a note starts in a cell (onset), that a note
sounds in it (frame), and the velocity / 127 of what sounds there. With ``recon="bce"``
(the default) these are three heads (sigmoid of logits, trained with BCE, and a velocity
regressed where notes sound); with ``recon="l1"`` (pix2pix's plain L1, the ablation) G
gives the onset and frame planes as velocities / 127, read as both probability and
velocity.

:func:`decode_probabilities` reads notes from those planes, as Onsets and Frames decodes:
a note starts where the onset probability peaks in time at the onset threshold or more
(or where a frame already sounds at a window's first step), lasts while the frame
probability stays at the frame threshold or more (and at least ``min_steps``), ends
where an onset peak of its pitch reaches the restrike threshold, sounds only among the
``max_voices`` likeliest pitches of a step and within the pitch range the training
targets used, and carries the velocity predicted at its start. The result is planes
that follow the data contract, so they decode to notes and MIDI exactly.

The probabilities decoded may be the mean of G's over the source transposed by -k..k
semitones, each moved back (:func:`transposed_mean`; test-time augmentation): k is tuned
on the valid split with the thresholds, among :data:`TRANSPOSITIONS`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from musicpairs.loader import shift_pitches
from musicpairs.roll import FRAME, ONSET

#: Planes per target channel in :func:`probabilities`' output.
ONSET_P, FRAME_P, VELOCITY = 0, 1, 2
PLANES = 3
#: Decoding settings used when a checkpoint has none tuned (probabilities, steps).
DEFAULT_DECODE = {"onset_threshold": 0.5, "frame_threshold": 0.5, "min_steps": 1,
                  "max_voices": None, "restrike_threshold": None}
#: The values each decoding setting is tuned over on the valid split. The thresholds are
#: densest near 1: ``balanced`` weighting weighs the sounding cells together as much as
#: the silent ones, which lifts every probability, and a model trained so puts its notes'
#: ends between frame probabilities of 0.9 and 0.95 (on POP909, a frame threshold of 0.9
#: keeps 89 % of the notes at half a beat or longer and 0.95 keeps 28 %; the real share is
#: 72 %).
DECODE_GRID = {
    "onset_threshold": (0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.8, 0.9, 0.92, 0.94, 0.95, 0.96,
                        0.98),
    "frame_threshold": (0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.8, 0.85, 0.9, 0.91, 0.92, 0.93,
                        0.94, 0.95, 0.97),
    "restrike_threshold": (None, 0.9, 0.95, 0.98, 0.99),
    "max_voices": (None, 2, 3, 4, 6, 8),
    "min_steps": (1, 2, 3),
}

#: The k of :func:`transposed_mean` that decoding is tuned over: G's own output, its
#: mean over a whole tone either way, and over five semitones either way (eleven keys: the
#: range ``--transpose 5`` trains on). The smaller k wins a tie on valid.
TRANSPOSITIONS = (0, 2, 5)

#: Probabilities are tuned on, and decoded from, multiples of 1 / LEVELS (the Validator
#: keeps them as uint8, p * 255): a threshold then means the same in tuning and in use.
LEVELS = 255


def to_levels(probs: np.ndarray) -> np.ndarray:
    """Probabilities in [0, 1] as uint8 multiples of 1 / :data:`LEVELS` (half to even):
    how tuning keeps them and how decoding reads them."""
    return np.rint(np.clip(probs, 0.0, 1.0) * LEVELS).astype(np.uint8)


def head_planes(recon: str) -> int:
    """G's output planes per target channel: 3 heads for ``bce``, 2 velocities for ``l1``."""
    return PLANES if recon == "bce" else 2


def to_unit(rolls: torch.Tensor) -> torch.Tensor:
    """uint8 rolls -> float32 velocity / 127 (silence 0)."""
    return rolls.float().mul_(1 / 127)


def harmony_plane(source: torch.Tensor) -> torch.Tensor:
    """uint8 sources (B, Cs, 128, W) -> float (B, 1, 128, W): 1 where the cell's pitch
    class sounds in any source channel at that step (pitch classes folded across octaves,
    then laid on every octave)."""
    sounding = (source[:, FRAME::2] > 0).any(1)  # (B, 128, W)
    b, _, w = sounding.shape
    padded = torch.zeros(b, 132, w, dtype=torch.bool, device=source.device)
    padded[:, :128] = sounding
    chroma = padded.view(b, 11, 12, w).any(1)  # (B, 12, W)
    return chroma.repeat(1, 11, 1)[:, :128].unsqueeze(1).float()


def model_input(source: torch.Tensor, harmony: bool,
                rows: tuple[int, int] = (0, 128)) -> torch.Tensor:
    """uint8 sources (B, Cs, 128, W) -> what G sees: (B, Cs [+ 1], HI - LO, W) in [0, 1],
    the pitch ``rows`` LO:HI of the source planes and of the harmony plane (which folds
    every source pitch, inside the rows or not)."""
    lo, hi = rows
    x = to_unit(source[..., lo:hi, :])
    return torch.cat([x, harmony_plane(source)[..., lo:hi, :]], 1) if harmony else x


def all_rows(planes: torch.Tensor, rows: tuple[int, int]) -> torch.Tensor:
    """Planes (B, P, HI - LO, W) of the pitch ``rows`` LO:HI -> (B, P, 128, W), 0 outside."""
    lo, hi = rows
    if (lo, hi) == (0, 128):
        return planes
    out = planes.new_zeros(*planes.shape[:-2], 128, planes.shape[-1])
    out[..., lo:hi, :] = planes
    return out


def input_planes(source_planes: int, harmony: bool) -> int:
    return source_planes + int(harmony)


def target_probabilities(target: torch.Tensor) -> torch.Tensor:
    """uint8 targets (B, 2C, 128, W) -> (B, 3C, 128, W): per channel onset (0/1), frame
    (0/1) and velocity / 127 where a note sounds (0 elsewhere); what D sees as real."""
    b, planes, h, w = target.shape
    t = target.view(b, planes // 2, 2, h, w)
    out = torch.stack([(t[:, :, ONSET] > 0).float(), (t[:, :, FRAME] > 0).float(),
                       to_unit(t[:, :, FRAME])], 2)
    return out.view(b, -1, h, w)


def probabilities(raw: torch.Tensor, recon: str) -> torch.Tensor:
    """G's raw output (B, heads * C, 128, W) -> (B, 3C, 128, W) in [0, 1]: onset and
    frame probabilities and velocity / 127 per channel (see the module docstring)."""
    b, planes, h, w = raw.shape
    unit = torch.sigmoid(raw.float())
    if recon == "bce":
        return unit
    pair = unit.view(b, planes // 2, 2, h, w)
    return torch.stack([pair[:, :, ONSET], pair[:, :, FRAME], pair[:, :, FRAME]], 2).view(
        b, -1, h, w)


def pitched_planes(channels: tuple[str, ...], planes: int) -> np.ndarray:
    """bool [planes * len(channels)]: which planes hold pitches (a drum channel's hold
    instruments, which a transposition must not move)."""
    return np.repeat([c != "drums" for c in channels], planes)


def transposed_mean(predict: Callable[[torch.Tensor], torch.Tensor], source: torch.Tensor,
                    k: int, source_pitched: np.ndarray | None = None,
                    output_pitched: np.ndarray | None = None) -> torch.Tensor:
    """The mean over s in -k..k of ``predict`` of the source moved up s semitones, moved
    back down s: G's answer averaged over 2k + 1 keys (``predict(source)`` when k is 0).

    Args:
        predict: uint8 sources (B, Cs, 128, W) -> planes (B, P, 128, W).
        source: uint8 (B, Cs, 128, W).
        k: Semitones each way.
        source_pitched, output_pitched: bool [Cs] and [P], the planes that move
            (:func:`pitched_planes`; drums stay); None: all.
    """
    total = None
    for s in range(-k, k + 1):
        p = shift_pitches(predict(shift_pitches(source, s, source_pitched)), -s,
                          output_pitched)
        total = p if total is None else total + p
    return total / (2 * k + 1)


# --------------------------------------------------------------------------------------
# Decoding


def _peaks(onset: np.ndarray) -> np.ndarray:
    """Where an onset probability plane (time last) peaks in time: above the step before,
    at least the step after. A plane that stays high over a note would otherwise cut it
    into one-step notes."""
    peak = onset > 0
    peak[..., 1:] &= onset[..., 1:] > onset[..., :-1]
    peak[..., :-1] &= onset[..., :-1] >= onset[..., 1:]
    return peak


def note_cells(onset: np.ndarray, frame: np.ndarray, *, onset_threshold: float,
               frame_threshold: float, min_steps: int = 1, max_voices: int | None = None,
               restrike_threshold: float | None = None,
               pitch_range: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Where :func:`decode_channel`'s notes sound and where they start, without their
    velocities (what tuning scores).

    Returns:
        bool [..., 128, W] twice: the cells where a note sounds, and those where one is
        struck (a note already sounding at step 0 is not, as a cut window's).
    """
    frame_on = frame >= frame_threshold
    struck = _peaks(onset) & (onset >= onset_threshold)
    if pitch_range is not None:
        allowed = np.zeros(onset.shape[-2], bool)
        allowed[pitch_range[0] : pitch_range[1] + 1] = True
        frame_on &= allowed[:, None]
        struck &= allowed[:, None]
    if max_voices is not None:
        candidates = np.where(frame_on, frame, -1.0)
        kth = -np.partition(-candidates, max_voices - 1, axis=-2)[..., max_voices - 1, :]
        loud_enough = candidates >= np.maximum(kth, 0)[..., None, :]
        frame_on &= loud_enough
        struck &= loud_enough
    restrike = struck if restrike_threshold is None else struck & (onset >= restrike_threshold)
    # The walk through time reads one step of every pitch at a time: time first, so that
    # each step's cells lie together in memory.
    frame_on, struck, restrike = (np.ascontiguousarray(np.moveaxis(a, -1, 0))
                                  for a in (frame_on, struck, restrike))
    starts = struck.copy()
    starts[0] |= frame_on[0]
    active = np.zeros_like(frame_on)
    active[0] = starts[0]
    age = active[0].astype(np.int32)  # steps the note at each pitch has sounded
    for t in range(1, len(frame_on)):
        held = active[t - 1] & (frame_on[t] | (age < min_steps))
        starts[t] = np.where(held, restrike[t], struck[t])
        active[t] = starts[t] | held
        age = np.where(starts[t], 1, np.where(active[t], age + 1, 0))
    starts[0] &= struck[0]
    return np.moveaxis(active, 0, -1), np.moveaxis(starts, 0, -1)


def decode_channel(onset: np.ndarray, frame: np.ndarray, velocity: np.ndarray, *,
                   onset_threshold: float, frame_threshold: float, min_steps: int = 1,
                   max_voices: int | None = None, restrike_threshold: float | None = None,
                   pitch_range: tuple[int, int] | None = None) -> np.ndarray:
    """Notes of one channel as planes (see the module docstring).

    Args:
        onset, frame, velocity: float [..., 128, W] in [0, 1] (any leading batch axes).
        onset_threshold, frame_threshold: Probabilities.
        min_steps: A note sounds at least this many steps (its frame held over any dip),
            unless its pitch is struck again sooner.
        max_voices: At most this many pitches sound at a step: those with the highest
            frame probabilities (ties may keep more), and a note starts only at one of
            them. None: no limit.
        restrike_threshold: The onset probability from which an onset peak inside a
            sounding note ends it and starts another of that pitch (a repeated note);
            ``onset_threshold`` when None. A model unsure of where its notes start
            fires smaller onset peaks inside held notes, which would cut them up.
        pitch_range: (lowest, highest) pitch kept; all when None.

    Returns:
        uint8 [..., 2, 128, W]: onset and frame planes, each note's velocity on both (a
        note already sounding at step 0 has no onset cell, as a cut window's).
    """
    active, struck = note_cells(
        onset, frame, onset_threshold=onset_threshold, frame_threshold=frame_threshold,
        min_steps=min_steps, max_voices=max_voices, restrike_threshold=restrike_threshold,
        pitch_range=pitch_range)
    # Each cell carries the velocity predicted where its note started: the step of the
    # latest onset at or before it (step 0 for a note sounding from before).
    steps = np.arange(onset.shape[-1], dtype=np.int32)
    began = np.maximum.accumulate(np.where(struck, steps, 0), axis=-1)
    level = np.take_along_axis(velocity, began, axis=-1)
    value = np.clip(np.rint(level * 127), 1, 127).astype(np.uint8)
    out = np.zeros((*onset.shape[:-2], 2, *onset.shape[-2:]), np.uint8)
    out[..., FRAME, :, :] = np.where(active, value, 0)
    out[..., ONSET, :, :] = np.where(struck, value, 0)
    return out


def decode_transpositions(decode: dict[str, Any] | None) -> int:
    """The k of :func:`transposed_mean` a checkpoint's ``decode`` entry was tuned with."""
    return int((decode or {}).get("transpositions", 0))


def channel_settings(decode: dict[str, Any] | None, channels: int) -> list[dict[str, Any]]:
    """Per channel decoding settings from a checkpoint's ``decode`` entry (defaults when
    it has none)."""
    if not decode:
        return [dict(DEFAULT_DECODE) for _ in range(channels)]
    return [{**DEFAULT_DECODE, **c} for c in decode["channels"]]


def decode_probabilities(probs: np.ndarray, decode: dict[str, Any] | None) -> np.ndarray:
    """Valid uint8 planes from :func:`probabilities` output, with a checkpoint's
    ``decode`` entry (per channel settings tuned on the valid split; defaults when None).
    The probabilities are first rounded to multiples of 1 / :data:`LEVELS`, as they were
    when the settings were tuned.

    Args:
        probs: float [3C, 128, W] or a batch [B, 3C, 128, W].

    Returns:
        uint8 [2C, 128, W] (or [B, 2C, 128, W]).
    """
    channels = probs.shape[-3] // PLANES
    settings = channel_settings(decode, channels)
    # The settings were tuned on probabilities rounded to 1/LEVELS: a restrike threshold of
    # 0.95 there keeps p >= 0.951 (243/255), and so must it here.
    probs = to_levels(probs).astype(np.float32) / LEVELS
    out = []
    for c, s in enumerate(settings):
        p = probs[..., PLANES * c : PLANES * (c + 1), :, :]
        pitch_range = s.get("pitch_range")
        out.append(decode_channel(
            p[..., ONSET_P, :, :], p[..., FRAME_P, :, :], p[..., VELOCITY, :, :],
            onset_threshold=float(s["onset_threshold"]),
            frame_threshold=float(s["frame_threshold"]), min_steps=int(s["min_steps"]),
            max_voices=s["max_voices"], restrike_threshold=s["restrike_threshold"],
            pitch_range=None if pitch_range is None else tuple(pitch_range)))
    return np.concatenate(out, axis=-3)
