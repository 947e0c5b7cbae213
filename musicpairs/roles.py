"""Track roles (melody, bass, drums, other) and instrument families (LPD-5, LPD-17).

The melody is found by name first (melody, vocal, lead, soprano... in several languages,
abbreviations and typos) and by content otherwise, or when no named track is plausible.
Content looks at what makes a line a tune: it is monophonic, it sounds through much of the
song, it is often the highest voice, it moves by small steps, it has notes to sing. The
weights were chosen on POP909 (MELODY against BRIDGE and PIANO) and the Bach chorales
(Soprano against the other voices); a small General MIDI program prior helps on files
whose programs vary (Lakh).
"""

from __future__ import annotations

import difflib
import functools
import re
from dataclasses import dataclass

import numpy as np

from musicpairs.roll import FRAME, ONSET, Roll

ROLES = ("melody", "bass", "drums", "other")

LPD5 = ("drums", "piano", "guitar", "bass", "strings")
LPD17 = (
    "drums", "piano", "chromatic percussion", "organ", "guitar", "bass", "strings",
    "ensemble", "brass", "reed", "pipe", "synth lead", "synth pad", "synth effects",
    "ethnic", "percussive", "sound effects",
)  # fmt: skip

# Words that name a melody, whole-word (Latin, Cyrillic) or as a substring (CJK).
_MELODY_WORDS = {
    "melody", "melodies", "mel", "mldy", "melo", "lead", "leadvocal", "leadvox", "vocal",
    "vocals", "voc", "vox", "voice", "vocalist", "singer", "sing", "singing", "tune", "theme",
    "soprano", "sop", "cantus", "chant", "canto", "cantante", "melodie", "mélodie", "melodia",
    "melodía", "melodi", "voix", "chanteur", "chanteuse", "stimme", "singstimme", "gesang",
    "sopran", "voz", "voce", "zang", "sång", "мелодия", "вокал", "голос",
}  # fmt: skip
_MELODY_CJK = ("旋律", "主旋", "人声", "人聲", "主唱", "演唱", "歌", "メロ", "ボーカル", "うた",
               "멜로디", "보컬", "노래")  # fmt: skip
# Long words close enough to match with a typo ("MELOPY", "MELDOY", "vocls").
_MELODY_FUZZY = ("melody", "melodie", "melodia", "vocals", "soprano")
# Words that make a named voice an accompaniment ("Backing Vocals", "Vocal Harmony").
_NOT_MELODY_WORDS = {
    "backing", "back", "bgv", "bg", "background", "harmony", "harm", "chord", "chords",
    "pad", "accomp", "accompaniment", "comp", "bass", "drum", "drums", "choir", "second",
    "2nd", "alto", "tenor",
}  # fmt: skip
_BASS_WORDS = {"bass", "bajo", "basse", "basso", "bas", "contrabass", "bassline", "бас"}
_BASS_CJK = ("贝斯", "貝斯", "低音", "ベース", "베이스")

# Melody content score: weight of each feature (see _content_features).
_WEIGHTS = {"poly": -4.0, "coverage": 0.5, "top_share": 0.5, "mean_interval": -0.2,
            "density": 0.5}  # fmt: skip
# A track needs this many notes and at most this much polyphony to be a melody.
MIN_MELODY_NOTES = 8
MAX_MELODY_POLYPHONY = 0.3


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


def _tokens(name: str) -> list[str]:
    return [t for t in re.split(r"[\W_]+", name.casefold()) if t]


def _split_digits(tokens: list[str]) -> list[str]:
    # "melody2" and "vox1" name a melody too.
    return [re.sub(r"\d+$", "", t) or t for t in tokens]


@functools.lru_cache(maxsize=4096)
def name_says_melody(name: str) -> bool:
    """Whether a track name calls the track a melody (and not an accompaniment)."""
    tokens = _split_digits(_tokens(name))
    if any(t in _NOT_MELODY_WORDS for t in tokens):
        return False
    if any(t in _MELODY_WORDS for t in tokens) or any(w in name for w in _MELODY_CJK):
        return True
    return any(
        len(t) >= 5 and difflib.SequenceMatcher(None, t, w).ratio() >= 0.8
        for t in tokens
        for w in _MELODY_FUZZY
    )


@functools.lru_cache(maxsize=4096)
def name_says_bass(name: str) -> bool:
    """Whether a track name calls the track a bass line ("Bass", "Fretless Bass", "贝斯")."""
    tokens = _split_digits(_tokens(name))
    return any(t in _BASS_WORDS for t in tokens) or any(w in name for w in _BASS_CJK)


def _program_prior(program: int) -> float:
    """A small push toward programs that usually carry a tune, away from bass and pads."""
    if 52 <= program <= 87:  # voices, brass, reeds, pipes, synth leads
        return 0.15
    if 32 <= program <= 39:  # basses
        return -0.5
    if program >= 88:  # pads, effects, percussive, sound effects
        return -0.2
    return 0.0


def content_features(roll: Roll, tracks: list[int] | None = None) -> dict[int, dict[str, float]]:
    """Per pitched track, the content features the melody score uses.

    All are measured from the first sounding step of the song to its end:
    ``poly`` share of the track's sounding steps with two or more pitches; ``coverage``
    share of steps where it sounds; ``top_share`` share of its sounding steps where it
    holds the highest pitch of all pitched tracks; ``mean_interval`` mean absolute
    interval between consecutive onsets (semitones, capped at 12); ``density`` onsets
    per step; ``notes`` onset count; ``mean_pitch``.

    Args:
        roll: The song.
        tracks: Only these tracks (default: every pitched track). ``top_share`` still
            compares with every pitched track.
    """
    pitched = [k for k, t in enumerate(roll.tracks) if not t.is_drum]
    if not pitched or roll.n_steps == 0:
        return {}
    wanted = pitched if tracks is None else [k for k in tracks if k in pitched]
    # Steps on the rows, pitches contiguous: per-step reductions run along memory.
    frames = np.ascontiguousarray(roll.planes[pitched, FRAME].transpose(0, 2, 1)) > 0
    sounding_any = frames.any(axis=(0, 2))  # (T,)
    first = int(np.argmax(sounding_any))
    frames = frames[:, first:]  # (K, S, 128)
    span = frames.shape[1]
    count = frames.sum(axis=2)  # (K, S)
    top = np.where(count > 0, 127 - np.argmax(frames[:, :, ::-1], axis=2), -1)
    highest = top.max(axis=0)  # (S,)
    pitch_axis = np.arange(128)

    out = {}
    for k in wanted:
        i = pitched.index(k)
        sounding = count[i] > 0
        n_sounding = int(sounding.sum())
        step, pitch = np.nonzero(roll.planes[k, ONSET, :, first:].T)  # by step, then pitch
        intervals = np.abs(np.diff(pitch.astype(np.int64)))
        hist = frames[i].sum(axis=0)  # (128,) sounding steps per pitch
        out[k] = {
            "poly": float((count[i] > 1).sum() / max(n_sounding, 1)),
            "coverage": n_sounding / span,
            "top_share": float((top[i][sounding] == highest[sounding]).mean()) if n_sounding
            else 0.0,
            "mean_interval": float(np.minimum(intervals, 12).mean()) if len(intervals) else 12.0,
            "density": len(pitch) / span,
            "notes": float(len(pitch)),
            "mean_pitch": float(hist @ pitch_axis / hist.sum()) if hist.any() else 0.0,
        }
    return out


def melody_scores(roll: Roll, features: dict[int, dict[str, float]] | None = None) -> np.ndarray:
    """Content melody score of every track (higher = more melody-like).

    Returns:
        float64 [tracks]; ``-inf`` for drums and for tracks too sparse or too polyphonic
        to be a melody (fewer than ``MIN_MELODY_NOTES`` notes, polyphony above
        ``MAX_MELODY_POLYPHONY``).
    """
    features = content_features(roll) if features is None else features
    scores = np.full(len(roll.tracks), -np.inf)  # tracks without features stay -inf
    for k, f in features.items():
        if not _can_be_melody(f["notes"], f["poly"]):
            continue
        scores[k] = sum(w * f[name] for name, w in _WEIGHTS.items())
        scores[k] += _program_prior(roll.tracks[k].program)
    return scores


def _can_be_melody(notes: float, poly: float) -> bool:
    return notes >= MIN_MELODY_NOTES and poly <= MAX_MELODY_POLYPHONY


def _plausible(roll: Roll, k: int) -> bool:
    """Whether track k can be a melody: what melody_scores checks, for one track, cheaply."""
    # (T,) pitches sounding per step; a bool sum into uint8 (at most 128) is ~5x faster
    # than count_nonzero along an axis.
    count = (roll.planes[k, FRAME] != 0).sum(axis=0, dtype=np.uint8)
    sounding = int(np.count_nonzero(count))
    notes = np.count_nonzero(roll.planes[k, ONSET])
    return _can_be_melody(notes, np.count_nonzero(count > 1) / max(sounding, 1))


def find_melody(roll: Roll, *, use_names: bool = True) -> int | None:
    """Index of the melody track, or None when no track can be one.

    A track whose name says melody wins if it is plausible by content (enough notes,
    mostly monophonic); among several such tracks, content decides. Otherwise the best
    content score among tracks not named or programmed as bass.
    """
    roles = assign_roles(roll, use_names=use_names)
    return next((k for k, r in enumerate(roles) if r.role == "melody"), None)


def assign_roles(roll: Roll, *, use_names: bool = True) -> list[TrackRole]:
    """Give every track of a roll its role and families.

    Args:
        roll: The song.
        use_names: Read track names (False: decide by content and program alone).

    Returns:
        One :class:`TrackRole` per track; at most one track has role ``"melody"``.
    """
    roles: list[tuple[str, str]] = []
    for t in roll.tracks:
        if t.is_drum:
            roles.append(("drums", "drum flag"))
        elif use_names and name_says_bass(t.name):
            roles.append(("bass", "name"))
        elif 32 <= t.program <= 39:
            roles.append(("bass", "program"))
        else:
            roles.append(("other", "default"))

    # Content features cost more than names: when names point at the melody, only those
    # tracks are measured (to check they are plausible).
    named = [k for k, t in enumerate(roll.tracks)
             if use_names and roles[k][0] == "other" and name_says_melody(t.name)]
    if len(named) == 1:
        named = [k for k in named if _plausible(roll, k)]
    elif named:
        scores = melody_scores(roll, content_features(roll, named))
        named = sorted((k for k in named if np.isfinite(scores[k])), key=lambda k: -scores[k])
    if named:
        melody, by = named[0], "name"
    else:
        scores = melody_scores(roll, content_features(roll))
        open_scores = np.where([r[0] == "other" for r in roles], scores, -np.inf)
        best = int(np.argmax(open_scores)) if len(open_scores) else 0
        melody, by = (best, "content") if len(open_scores) and np.isfinite(
            open_scores[best]) else (None, "")
    if melody is not None:
        roles[melody] = ("melody", by)

    return [
        TrackRole(role, lpd5_family(t.program, t.is_drum), lpd17_family(t.program, t.is_drum),
                  by)
        for (role, by), t in zip(roles, roll.tracks, strict=True)
    ]
