"""Track roles (melody, bass, drums, other) and instrument families (LPD-5, LPD-17).

The melody is found as a musician would find it:

1. Drums (the drum flag, percussive programs 112-127, tracks named or played as a drum kit
   on another channel) are never the melody.
2. A name that says melody or vocal ("Melody", "Lead Vocal", "Gesang", "主旋律") wins when
   one such track is there (it only has to be a plausible line: enough notes, not chords
   throughout). Weaker names ("Lead Guitar", "Solo", "Theme") count only when no such
   name is there.
3. Otherwise a small classifier scores every candidate track by content (register and its
   rank among the tracks, polyphony, coverage, intervals, inter-onset intervals, density,
   program family; see :func:`track_features`). Its weights ship as
   ``musicpairs/data/melody_model.json`` (plain JSON, no pickle), trained on weak labels
   from real corpora by ``tools/melody_model.py``. The best candidate is the melody when
   the classifier prefers it clearly enough over the runner-up (``min_confidence``, see
   :class:`MelodyChoice`); otherwise no track is confidently the melody and
   :func:`find_melody` abstains (the build rejects such files as ``no confident
   melody``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from musicpairs.melody import (  # noqa: F401 - the classifier's API, re-exported
    FEATURES,
    MIN_MELODY_NOTES,
    PROGRAM_GROUPS,
    MelodyModel,
    TrackFeatures,
    default_model,
    melody_probabilities,
    track_features,
)
from musicpairs.names import (  # noqa: F401 - re-exported
    melody_name_strength,
    name_says_bass,
    name_says_drums,
    name_says_melody,
)
from musicpairs.roll import Roll

ROLES = ("melody", "bass", "drums", "other")

LPD5 = ("drums", "piano", "guitar", "bass", "strings")
LPD17 = (
    "drums", "piano", "chromatic percussion", "organ", "guitar", "bass", "strings",
    "ensemble", "brass", "reed", "pipe", "synth lead", "synth pad", "synth effects",
    "ethnic", "percussive", "sound effects",
)  # fmt: skip


#: Most polyphony (share of sounding steps with two or more pitches) of a melody found by
#: content, and of one found by a name (named vocal tracks often hold a harmony part).
MAX_MELODY_POLYPHONY = 0.5
MAX_NAMED_POLYPHONY = 0.9

@dataclass(frozen=True)
class TrackRole:
    """The role of one track and its families.

    Attributes:
        role: One of :data:`ROLES`.
        lpd5: LPD-5 family, or None for programs LPD-5 leaves out (96-103, 112-127).
        lpd17: LPD-17 family.
        by: What decided the role: ``"drum flag"``, ``"name"``, ``"content"``,
            ``"program"`` or ``"default"``.
    """

    role: str
    lpd5: str | None
    lpd17: str
    by: str


def lpd5_family(program: int, is_drum: bool) -> str | None:
    """LPD-5 family: drums (drum flag), piano 0-7, guitar 24-31, bass 32-39, strings
    (every other program below 96, and 104-111); None for 96-103 and 112-127."""
    if is_drum:
        return "drums"
    if 0 <= program <= 7:
        return "piano"
    if 24 <= program <= 31:
        return "guitar"
    if 32 <= program <= 39:
        return "bass"
    if program < 96 or 104 <= program <= 111:
        return "strings"
    return None


def lpd17_family(program: int, is_drum: bool) -> str:
    """LPD-17 family: drums, or one of the 16 General MIDI program groups (program // 8)."""
    return "drums" if is_drum else LPD17[1 + program // 8]


# --------------------------------------------------------------------------------------
# Choosing the melody


@dataclass(frozen=True)
class MelodyChoice:
    """Which track is the melody, and how that was decided.

    Attributes:
        track: The melody's index, or None.
        by: ``"name"``, ``"content"``, or why there is none: ``"no candidate"`` (no
            pitched, non-percussive track with enough notes) or ``"not confident"``.
        confidence: How surely content chose: the best candidate's share of the
            probability of the best two (1.0 when it is the only candidate; 0.5 for a
            tie); for a choice by name, the classifier's probability of that track.
        probabilities: float64 [tracks], see :func:`melody_probabilities`.
    """

    track: int | None
    by: str
    confidence: float
    probabilities: np.ndarray


def choose_melody(roll: Roll, *, use_names: bool = True, min_confidence: float = 0.0,
                  model: MelodyModel | None = None, explain: bool = True) -> MelodyChoice:
    """Find the melody as :mod:`musicpairs.roles` describes.

    Args:
        roll: The song.
        use_names: Read track names (False: content and program alone).
        min_confidence: Least confidence a track found by content needs (see
            :class:`MelodyChoice`); below it the choice is None (``by="not confident"``).
            Names are not held to it.
        model: The classifier (default: the shipped one).
        explain: Score every track by content even when a name decides (False, as a
            build does: ``probabilities`` are NaN and ``confidence`` NaN then).
    """
    # Names first: when they decide, the classifier runs only if asked to explain, and
    # only the named tracks are measured.
    strength = np.array([0 if t.is_drum or not use_names else melody_name_strength(t.name)
                         for t in roll.tracks])
    if explain or not strength.any():
        features = track_features(roll)
    else:
        features = track_features(roll, full=False, only=np.flatnonzero(strength).tolist())
    cand = features.candidate
    probs = (melody_probabilities(roll, features, model) if features.full
             else np.full(len(roll.tracks), np.nan))
    if features.full and not cand.any():
        return MelodyChoice(None, "no candidate", 0.0, probs)
    if use_names:
        strength = np.where(cand, strength, 0)
        for level in (2, 1):
            named = np.flatnonzero(strength == level)
            limit = MAX_NAMED_POLYPHONY if level == 2 else MAX_MELODY_POLYPHONY
            named = named[features.poly[named] <= limit]
            if not len(named):
                continue
            names = {roll.tracks[k].name.strip().casefold() for k in named}
            if level == 2 and len(names) == 1:
                # One name, perhaps split by the parser into parts by program: its
                # biggest part (the name is what decides, not the content).
                k = int(named[np.argmax(features.notes[named])])
            else:  # several names: content decides among them
                features, probs = _scored(roll, features, probs, model)
                k = int(named[np.argmax(probs[named])])
            return MelodyChoice(k, "name", float(probs[k]), probs)
    features, probs = _scored(roll, features, probs, model)
    cand = features.candidate
    if not cand.any():
        return MelodyChoice(None, "no candidate", 0.0, probs)
    open_ = cand & np.array([not _is_bass(t, use_names) for t in roll.tracks])
    masked = np.where(open_ & (features.poly <= MAX_MELODY_POLYPHONY), probs, -1.0)
    k = int(np.argmax(masked))
    if masked[k] < 0:
        return MelodyChoice(None, "no candidate", 0.0, probs)
    confidence = _confidence(masked)
    if confidence < min_confidence:
        return MelodyChoice(None, "not confident", confidence, probs)
    return MelodyChoice(k, "content", confidence, probs)


def _scored(roll, features, probs, model):
    """Features and probabilities of every track, measured now if not yet."""
    if features.full:
        return features, probs
    features = track_features(roll)
    return features, melody_probabilities(roll, features, model)


def _confidence(probs: np.ndarray) -> float:
    """The best candidate's share of the best two's probability (1 when it is alone).

    Measured on real Lakh files, the softmax probability itself separates right from
    wrong picks no better than this, and abstains on many more right ones: it falls with
    the number of candidates. The share falls only when two tracks look alike to the
    classifier (0.5: a tie), which is when a musician would hesitate too.
    """
    best, second = np.sort(probs)[::-1][:2] if len(probs) > 1 else (probs[0], 0.0)
    return float(best / (best + max(second, 0.0)))


def _is_bass(t, use_names: bool) -> bool:
    return (use_names and name_says_bass(t.name)) or 32 <= t.program <= 39


def find_melody(roll: Roll, *, use_names: bool = True,
                min_confidence: float = 0.0) -> int | None:
    """Index of the melody track, or None when no track is (confidently) the melody.

    See :func:`choose_melody`.
    """
    return choose_melody(roll, use_names=use_names, min_confidence=min_confidence).track


def assign_roles(roll: Roll, *, use_names: bool = True, min_confidence: float = 0.0,
                 choice: MelodyChoice | None = None) -> list[TrackRole]:
    """Give every track of a roll its role and families.

    Args:
        roll: The song.
        use_names: Read track names (False: decide by content and program alone).
        min_confidence: See :func:`choose_melody`.
        choice: The melody already chosen (default: chosen here).

    Returns:
        One :class:`TrackRole` per track; at most one track has role ``"melody"``.
    """
    if choice is None:
        choice = choose_melody(roll, use_names=use_names, min_confidence=min_confidence)
    out = []
    for k, t in enumerate(roll.tracks):
        if t.is_drum:
            role, by = "drums", "drum flag"
        elif k == choice.track:
            role, by = "melody", choice.by
        elif use_names and name_says_bass(t.name):
            role, by = "bass", "name"
        elif 32 <= t.program <= 39:
            role, by = "bass", "program"
        else:
            role, by = "other", "default"
        out.append(TrackRole(role, lpd5_family(t.program, t.is_drum),
                             lpd17_family(t.program, t.is_drum), by))
    return out

