"""Per-track content features and the melody classifier (see ``roles.py`` for how the
melody is chosen).

Features come from a roll's notes on the grid (``Roll.grid()``), not from its planes. The
classifier's weights ship as ``musicpairs/data/melody_model.json`` (plain JSON, no
pickle), trained by ``tools/melody_model.py`` on weak labels from real corpora.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from importlib import resources

import numpy as np

from musicpairs.names import name_says_drums
from musicpairs.roll import Roll

#: A track needs this many notes to be a melody.
MIN_MELODY_NOTES = 8
# General MIDI kit keys (kick, snare, hi-hats) for telling kits on other channels.
_KIT_KEYS = np.zeros(128, bool)
_KIT_KEYS[[35, 36, 37, 38, 39, 40, 42, 44, 46, 49, 51, 57]] = True


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
