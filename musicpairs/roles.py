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

import difflib
import functools
import json
import re
from dataclasses import dataclass
from importlib import resources

import numpy as np

from musicpairs.roll import Roll

ROLES = ("melody", "bass", "drums", "other")

LPD5 = ("drums", "piano", "guitar", "bass", "strings")
LPD17 = (
    "drums", "piano", "chromatic percussion", "organ", "guitar", "bass", "strings",
    "ensemble", "brass", "reed", "pipe", "synth lead", "synth pad", "synth effects",
    "ethnic", "percussive", "sound effects",
)  # fmt: skip

# Words that name the melody or the singer, whole-word (Latin, Cyrillic) or as a substring
# (CJK): an unambiguous melody/vocal name.
_STRONG_WORDS = {
    "melody", "melodies", "mel", "mldy", "melo", "leadvocal", "leadvox", "vocal", "vocals",
    "voc", "vox", "voice", "vocalist", "singer", "sing", "singing", "soprano", "sop",
    "cantus", "canto", "cantante", "melodie", "mélodie", "melodia", "melodía", "melodi",
    "voix", "chanteur", "chanteuse", "stimme", "singstimme", "gesang", "sopran", "voz",
    "voce", "zang", "sång", "мелодия", "вокал", "голос",
}  # fmt: skip
_STRONG_CJK = ("旋律", "主旋", "人声", "人聲", "主唱", "演唱", "歌", "メロ", "ボーカル", "うた",
               "멜로디", "보컬", "노래")  # fmt: skip
# Words that name a leading part without saying it is the tune: they count only when no
# track is named as the melody or the voice.
_WEAK_WORDS = {"lead", "solo", "theme", "tune", "chant", "hook", "topline"}
# Long words close enough to match with a typo ("MELOPY", "MELDOY", "vocls").
_MELODY_FUZZY = ("melody", "melodie", "melodia", "vocals", "soprano")
# Words that make a named part an accompaniment ("Backing Vocals", "Vocal Harmony").
_NOT_MELODY_WORDS = {
    "backing", "back", "bgv", "bg", "bv", "bkg", "background", "backup", "harmony", "harm",
    "chord", "chords", "pad", "accomp", "accompaniment", "comp", "bass", "drum", "drums",
    "choir", "second", "secondary", "2nd", "alto", "tenor", "chorus", "aah", "aahs", "ooh",
    "oohs", "space", "syn", "synth",
}  # fmt: skip
# An instrument after a voice range names that instrument ("Soprano Sax"), not a voice.
_RANGE_WORDS = {"soprano", "sopran", "sop"}
_INSTRUMENT_WORDS = {"sax", "saxophone", "recorder", "clarinet", "cornet", "trombone", "ukulele"}
_BASS_WORDS = {"bass", "bajo", "basse", "basso", "bas", "contrabass", "bassline", "бас"}
_BASS_CJK = ("贝斯", "貝斯", "低音", "ベース", "베이스")
_DRUM_WORDS = {
    "drum", "drums", "drumkit", "perc", "percussion", "percussions", "snare", "kick",
    "hihat", "cymbal", "cymbals", "conga", "congas", "bongo", "bongos", "maraca", "maracas",
    "tambourine", "handclap", "timbales", "cowbell", "batterie", "schlagzeug", "bateria",
    "batería", "ударные",
}  # fmt: skip
# Drum words that are also other words ("Tom's Guitar", "Ride", "Kit's Piano"): they count
# only in a name that names no pitched instrument.
_DRUM_WORDS_ALONE = {"kit", "bd", "sd", "hh", "hat", "hats", "crash", "ride", "tom", "toms",
                     "shaker", "tamb", "clap", "claps"}  # fmt: skip
_PITCHED_WORDS = {
    "guitar", "gtr", "piano", "organ", "bass", "strings", "string", "sax", "flute", "trumpet",
    "brass", "violin", "cello", "synth", "lead", "melody", "vocal", "vocals", "voice", "pad",
    "keys", "harp", "clarinet", "oboe", "horn", "trombone", "bells", "marimba", "vibes",
}  # fmt: skip
_DRUM_CJK = ("鼓", "ドラム", "드럼")

#: A track needs this many notes to be a melody.
MIN_MELODY_NOTES = 8
#: Most polyphony (share of sounding steps with two or more pitches) of a melody found by
#: content, and of one found by a name (named vocal tracks often hold a harmony part).
MAX_MELODY_POLYPHONY = 0.5
MAX_NAMED_POLYPHONY = 0.9
# General MIDI kit keys (kick, snare, hi-hats) for telling kits on other channels.
_KIT_KEYS = np.zeros(128, bool)
_KIT_KEYS[[35, 36, 37, 38, 39, 40, 42, 44, 46, 49, 51, 57]] = True


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
def melody_name_strength(name: str) -> int:
    """How surely a track name calls the track the melody.

    Returns:
        2 for a melody or vocal name ("Melody", "Lead Vocal", "Trumpet {Melody}",
        "Gesang", "主旋律", "MELOPY"); 1 for a weaker name ("Lead Guitar", "Solo",
        "Theme"); 0 for anything else, and for names that make the part an
        accompaniment ("Backing Vocals", "Vocal Harmony", "Soprano Sax").
    """
    tokens = _split_digits(_tokens(name))
    if any(t in _NOT_MELODY_WORDS for t in tokens):
        return 0
    strong = [t for t in tokens if t in _STRONG_WORDS]
    if strong and all(t in _RANGE_WORDS for t in strong) and any(
            t in _INSTRUMENT_WORDS for t in tokens):
        return 0
    if strong or any(w in name for w in _STRONG_CJK) or any(
            len(t) >= 5 and difflib.SequenceMatcher(None, t, w).ratio() >= 0.8
            for t in tokens for w in _MELODY_FUZZY):
        return 2
    return 1 if any(t in _WEAK_WORDS for t in tokens) else 0


def name_says_melody(name: str) -> bool:
    """Whether a track name calls the track a melody, surely or weakly (see
    :func:`melody_name_strength`)."""
    return melody_name_strength(name) > 0


@functools.lru_cache(maxsize=4096)
def name_says_bass(name: str) -> bool:
    """Whether a track name calls the track a bass line ("Bass", "Fretless Bass", "贝斯")."""
    tokens = _split_digits(_tokens(name))
    if any(t in _DRUM_WORDS for t in tokens):  # "Bass Drum"
        return False
    return any(t in _BASS_WORDS for t in tokens) or any(w in name for w in _BASS_CJK)


@functools.lru_cache(maxsize=4096)
def name_says_drums(name: str) -> bool:
    """Whether a track name calls the track drums or percussion ("Drums", "Bass Drum",
    "Hi Hat", "Perc.", "Schlagzeug")."""
    tokens = _split_digits(_tokens(name))
    if any(t in _DRUM_WORDS for t in tokens) or any(w in name for w in _DRUM_CJK):
        return True
    return (any(t in _DRUM_WORDS_ALONE for t in tokens)
            and not any(t in _PITCHED_WORDS for t in tokens))


# --------------------------------------------------------------------------------------
# Content features and the melody classifier

#: Program groups of the classifier's one-hot program features (first program of each).
PROGRAM_GROUPS = (("piano", 0), ("chromatic", 8), ("organ", 16), ("guitar", 24),
                  ("bass", 32), ("strings", 40), ("voice", 52), ("ensemble", 55),
                  ("brass", 56), ("reed", 64), ("pipe", 72), ("synth lead", 80),
                  ("pad and effects", 88))  # fmt: skip
_GROUP_OF_PROGRAM = np.searchsorted([g[1] for g in PROGRAM_GROUPS], np.arange(128),
                                    side="right") - 1
#: Names of the columns of :func:`track_features`.
FEATURES = (
    "log_notes", "notes_share", "coverage", "coverage_share", "poly", "chord_notes",
    "mean_pitch", "pitch_rank", "pitch_gap", "top_share", "pitch_std", "distinct_pitches",
    "interval", "steps", "repeats", "leaps", "log_ioi", "log_duration", "density",
    "velocity", "n_candidates",
    *(f"program: {name}" for name, _ in PROGRAM_GROUPS),
)  # fmt: skip


@dataclass(frozen=True)
class TrackFeatures:
    """Per-track content features of a roll.

    Attributes:
        values: float64 [tracks, len(FEATURES)]; rows of non-candidates are zeros.
        candidate: bool [tracks]: pitched, not percussive, at least ``MIN_MELODY_NOTES``
            notes: the tracks that may be the melody.
        percussive: bool [tracks]: drum flag, programs 112-127, a drum name, or played
            as a kit (mostly General MIDI kit keys, struck together).
        notes: int64 [tracks]: notes on the grid.
        poly: float64 [tracks]: share of sounding steps with two or more pitches.
        full: Whether ``values`` were measured (see :func:`track_features`).
    """

    values: np.ndarray
    candidate: np.ndarray
    percussive: np.ndarray
    notes: np.ndarray
    poly: np.ndarray
    full: bool = True

    def column(self, name: str) -> np.ndarray:
        return self.values[:, FEATURES.index(name)]


def track_features(roll: Roll, *, full: bool = True,
                   only: list[int] | None = None) -> TrackFeatures:
    """Content features of every track, from its notes on the grid (no plane scans).

    With ``full=False`` only what names need is measured (candidates, percussive tracks,
    notes, polyphony), and with ``only`` for those tracks alone (the others are not
    candidates then); ``values`` stay zeros.

    Measured from the first onset of the song's pitched, non-percussive tracks to their
    last note's end: ``coverage`` (share of steps the track sounds), ``poly`` (share of
    its sounding steps with two or more pitches), ``chord_notes`` (share of its notes
    struck with another of its notes), ``top_share`` (share of its sounding steps where
    it holds the highest pitch of all candidates), ``mean_pitch`` ((mean - 60) / 12),
    ``pitch_rank`` (0 for the highest mean pitch among candidates, 1 for the lowest),
    ``pitch_gap`` (mean pitch above the highest other candidate, octaves), intervals of
    its top line (mean size / 12; shares of steps of 1-2 semitones, repeats, leaps over a
    fifth), mean log2 inter-onset interval and note length (steps), onsets per step,
    velocity against the candidates' mean, distinct pitches, candidates in the song, and
    the program's group.
    """
    grid = roll.grid()
    n_tracks = len(roll.tracks)
    bounds = grid.bounds(n_tracks)
    notes = np.diff(bounds)
    drum_flag = np.array([t.is_drum for t in roll.tracks], bool)
    program = np.array([t.program for t in roll.tracks], np.int64)
    named_drums = np.array([name_says_drums(t.name) for t in roll.tracks], bool)
    track, pitch, start, end = grid.track, grid.pitch, grid.start, grid.end
    measured = np.ones(n_tracks, bool)
    if only is not None and not full:
        measured[:] = False
        measured[list(only)] = True
        mine = measured[track]
        track, pitch, start, end = track[mine], pitch[mine], start[mine], end[mine]
    width = grid.n_steps + 1

    # Notes struck per (track, step): chords, and the steps a track strikes at all (not
    # measured for drum-flagged tracks: percussive whatever they play).
    pitched_notes = ~drum_flag[track]
    struck = np.bincount(track[pitched_notes] * width + start[pitched_notes],
                         minlength=n_tracks * width).reshape(n_tracks, width)
    onset_steps = np.count_nonzero(struck, axis=1)
    chord_notes = 1 - onset_steps / np.maximum(notes, 1)
    # Kits on a channel other than 10: mostly GM kit keys, often struck together.
    new_pitch = np.ones(len(track), bool)
    new_pitch[1:] = (track[1:] != track[:-1]) | (pitch[1:] != pitch[:-1])
    kit_share = np.bincount(track, _KIT_KEYS[pitch], minlength=n_tracks) / np.maximum(notes, 1)
    distinct = np.bincount(track[new_pitch], minlength=n_tracks)
    played_as_kit = (kit_share >= 0.7) & (chord_notes >= 0.2) & (distinct >= 3)
    one_key = (distinct <= 2) & (notes >= 64)  # a click or a single struck key
    percussive = drum_flag | (program >= 112) | named_drums | played_as_kit | one_key
    candidate = ~percussive & (notes >= MIN_MELODY_NOTES) & measured

    values = np.zeros((n_tracks, len(FEATURES)))
    poly = np.zeros(n_tracks)
    pitched = np.flatnonzero(~percussive & (notes > 0) & measured)
    if not candidate.any():
        return TrackFeatures(values, candidate, percussive, notes, poly)
    in_line = np.zeros(n_tracks, bool)
    in_line[pitched] = True
    keep = in_line[track]
    local = np.full(n_tracks, -1, np.int64)
    local[pitched] = np.arange(len(pitched))
    lt, p, s, e = local[track[keep]], pitch[keep], start[keep], end[keep]
    first, last = int(s.min()), int(e.max())
    span = max(last - first, 1)
    n_local = len(pitched)

    # Pitches sounding per step, per track: +1 at each start, -1 at each end, summed.
    size = n_local * (span + 1)
    edges = (np.bincount(lt * (span + 1) + (s - first), minlength=size)
             - np.bincount(lt * (span + 1) + (e - first), minlength=size))
    count = np.cumsum(edges.reshape(n_local, span + 1)[:, :span], axis=1)  # (K, S)
    sounding = np.count_nonzero(count, axis=1)
    poly_local = np.count_nonzero(count > 1, axis=1) / np.maximum(sounding, 1)
    poly[pitched] = poly_local
    if not full:
        return TrackFeatures(values, candidate, percussive, notes, poly, full=False)
    # The highest pitch sounding at each step, over all candidates; a track holds it at
    # a step when one of its notes sounding there has that pitch.
    dur = e - s
    ends = np.cumsum(dur)
    # int32 cells: a roll is at most RollSpec.max_steps (2**17 by default) long.
    step = (np.repeat((s - first - (ends - dur)).astype(np.int32), dur)
            + np.arange(int(ends[-1]), dtype=np.int32))  # (cells,)
    cell_pitch = np.repeat(p.astype(np.int16), dur)
    highest = np.full(span, -1, np.int16)
    np.maximum.at(highest, step, cell_pitch)
    on_top = np.flatnonzero(cell_pitch == highest[step])
    note = np.searchsorted(ends, on_top, side="right")  # the note of each such cell
    holds = np.zeros(n_local * span, bool)
    holds[lt[note] * span + step[on_top]] = True
    top_share = np.count_nonzero(holds.reshape(n_local, span), axis=1) / np.maximum(sounding, 1)

    # The top line: the highest onset of each onset step, in time order per track.
    sky = np.full(n_local * width, -1, np.int16)
    np.maximum.at(sky, lt * width + s, p.astype(np.int16))
    at = np.flatnonzero(sky >= 0)
    lt_o, s_o, p_o = at // width, at % width, sky[at].astype(np.int64)
    same = lt_o[1:] == lt_o[:-1]
    interval = np.abs(np.diff(p_o))[same]
    ioi = np.diff(s_o)[same]
    t_i = lt_o[1:][same]
    n_int = np.maximum(np.bincount(t_i, minlength=n_local), 1)

    def interval_mean(weights):
        return np.bincount(t_i, weights, minlength=n_local) / n_int

    interval_sum = interval_mean(np.minimum(interval, 12).astype(np.float64))
    steps = interval_mean(((interval >= 1) & (interval <= 2)).astype(np.float64))
    repeats = interval_mean((interval == 0).astype(np.float64))
    leaps = interval_mean((interval > 7).astype(np.float64))
    log_ioi = interval_mean(np.log2(np.minimum(ioi, 64)))

    n_notes = notes[pitched].astype(float)
    pf = p.astype(np.float64)

    def note_mean(weights):
        return np.bincount(lt, weights, minlength=n_local) / n_notes

    mean_pitch, pitch_sq = note_mean(pf), note_mean(pf * pf)
    velocity = note_mean(grid.velocity[keep].astype(np.float64))
    log_dur = note_mean(np.log2(dur))
    is_cand = candidate[pitched]
    cand_pitch = np.where(is_cand, mean_pitch, -np.inf)
    rank = (cand_pitch[None, :] > mean_pitch[:, None]).sum(axis=1)  # candidates above
    n_cand = int(is_cand.sum())
    # The highest other candidate: the best, or for the best itself the second best.
    ranked = np.sort(cand_pitch)[::-1]
    second = ranked[1] if n_local > 1 else -np.inf
    other_best = np.where(cand_pitch == ranked[0], second, ranked[0])
    gap = np.clip(np.where(np.isfinite(other_best), mean_pitch - other_best, 36.0) / 12,
                  -3, 3)
    coverage = sounding / span
    columns = {
        "log_notes": np.log1p(n_notes),
        "notes_share": n_notes / n_notes[is_cand].max(),
        "coverage": coverage,
        "coverage_share": coverage / max(coverage[is_cand].max(), 1e-9),
        "poly": poly_local,
        "chord_notes": chord_notes[pitched],
        "mean_pitch": (mean_pitch - 60) / 12,
        "pitch_rank": rank / max(n_cand - 1, 1),
        "pitch_gap": gap,
        "top_share": top_share,
        "pitch_std": np.sqrt(np.maximum(pitch_sq - mean_pitch**2, 0)) / 12,
        "distinct_pitches": np.log(distinct[pitched]),
        "interval": interval_sum / 12,
        "steps": steps,
        "repeats": repeats,
        "leaps": leaps,
        "log_ioi": log_ioi,
        "log_duration": log_dur,
        "density": onset_steps[pitched] / span,
        "velocity": (velocity - velocity[is_cand].mean()) / 127,
        "n_candidates": np.full(n_local, np.log(n_cand)),
    }
    programs = np.zeros((n_local, len(PROGRAM_GROUPS)))
    programs[np.arange(n_local), _GROUP_OF_PROGRAM[program[pitched]]] = 1
    block = np.column_stack([columns[name] for name in FEATURES[: len(columns)]] + [programs])
    block[~is_cand] = 0
    values[pitched] = block
    return TrackFeatures(values, candidate, percussive, notes, poly)


@dataclass(frozen=True)
class MelodyModel:
    """The melody classifier: a one-hidden-layer network over standardized
    :data:`FEATURES` giving each candidate a score; a softmax over the song's candidates
    gives each its probability of being the melody.

    Read from JSON (never pickle): ``features`` (names, checked against
    :data:`FEATURES`), ``mean``, ``std``, ``w1`` [F, H], ``b1`` [H], ``w2`` [H], ``b2``.
    """

    mean: np.ndarray
    std: np.ndarray
    w1: np.ndarray
    b1: np.ndarray
    w2: np.ndarray
    b2: float
    info: dict

    @classmethod
    def from_json(cls, data: dict) -> MelodyModel:
        if tuple(data["features"]) != FEATURES:
            raise ValueError("the melody model was trained on other features: "
                             f"{data['features']}")
        arr = {k: np.asarray(data[k], np.float64) for k in ("mean", "std", "w1", "b1", "w2")}
        return cls(**arr, b2=float(data["b2"]), info=dict(data.get("info", {})))

    def to_json(self) -> dict:
        return {"features": list(FEATURES), "info": self.info,
                **{k: np.round(getattr(self, k), 6).tolist()
                   for k in ("mean", "std", "w1", "b1", "w2")}, "b2": round(self.b2, 6)}

    def scores(self, values: np.ndarray) -> np.ndarray:
        """float64 [N]: each row's score (a logit before the per-song softmax)."""
        hidden = np.tanh(((values - self.mean) / self.std) @ self.w1 + self.b1)
        return hidden @ self.w2 + self.b2


@functools.lru_cache(maxsize=1)
def default_model() -> MelodyModel:
    """The shipped classifier, ``musicpairs/data/melody_model.json``."""
    text = resources.files("musicpairs").joinpath("data/melody_model.json").read_text()
    return MelodyModel.from_json(json.loads(text))


def melody_probabilities(roll: Roll, features: TrackFeatures | None = None,
                         model: MelodyModel | None = None) -> np.ndarray:
    """Each track's probability of being the melody, by content alone.

    Returns:
        float64 [tracks], summing to 1 over the candidates; 0 for every other track
        (percussive, too few notes).
    """
    features = track_features(roll) if features is None else features
    model = model or default_model()
    out = np.zeros(len(roll.tracks))
    idx = np.flatnonzero(features.candidate)
    if len(idx):
        logits = model.scores(features.values[idx])
        z = np.exp(logits - logits.max())
        out[idx] = z / z.sum()
    return out


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
    if not open_.any():
        return MelodyChoice(None, "no candidate", 0.0, probs)
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
