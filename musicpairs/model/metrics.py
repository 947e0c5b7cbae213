"""Scores of generated rolls against real ones.

Decoded uint8 planes (onset, frame per channel, as the data contract makes them),
scored by :class:`ScoreSheet`: frame precision / recall / F1 and Bay accuracy, onset F1
(same pitch, within a step), the MuseGAN metrics per channel, note counts and pitch
ranges, and polyphony and note-length histograms.
"""

from __future__ import annotations

import numpy as np

from musicpairs.roll import FRAME, ONSET, planes_to_notes

# --------------------------------------------------------------------------------------
# Counts and ratios


def f1_scores(counts) -> dict[str, float]:
    """Precision, recall and F1 from (tp, fp, fn); each is 1.0 when its denominator is 0
    (nothing predicted and nothing to find is a perfect score)."""
    tp, fp, fn = (int(v) for v in counts)
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0
    return {"precision": precision, "recall": recall, "f1": f1}


def bay_accuracy(counts) -> float:
    """Frame accuracy as Bay et al. (2009, MIREX multiple-F0) define it: TP / (TP + FP +
    FN); 1.0 when there is nothing to find and nothing was found."""
    tp, fp, fn = (int(v) for v in counts)
    return tp / (tp + fp + fn) if tp + fp + fn else 1.0


# --------------------------------------------------------------------------------------
# Notes


def onset_matches(generated: np.ndarray, real: np.ndarray, tolerance: int = 1) -> int:
    """Matched onsets of one channel: one-to-one pairs of generated and real onset cells
    of the same pitch at most ``tolerance`` steps apart, as many as can be made.

    Args:
        generated, real: onset planes [128, W] (non-zero = an onset).

    Returns:
        The size of a maximum matching. Generated onsets are taken in time order, each
        paired with the earliest real onset still free in its reach; for reaches of equal
        length this greedy is optimal.
    """
    width = generated.shape[-1] + 2 * tolerance + 1  # keys of two pitches never meet
    p, t = np.nonzero(generated)
    g = (p * width + t).tolist()
    p, t = np.nonzero(real)
    r = (p * width + t).tolist()
    matched, j = 0, 0
    for key in g:  # both are in (pitch, step) order
        while j < len(r) and r[j] < key - tolerance:
            j += 1
        if j < len(r) and r[j] <= key + tolerance:
            matched += 1
            j += 1
    return matched


# Tonal centroid (Harte, Sandler and Gasser 2006): chroma -> 6-D, circles of fifths,
# minor thirds and major thirds with radii 1, 1, 0.5.
_PC = np.arange(12)
TONNETZ = np.stack([
    np.sin(_PC * 7 * np.pi / 6), np.cos(_PC * 7 * np.pi / 6),
    np.sin(_PC * 3 * np.pi / 2), np.cos(_PC * 3 * np.pi / 2),
    0.5 * np.sin(_PC * 2 * np.pi / 3), 0.5 * np.cos(_PC * 2 * np.pi / 3),
])  # [6, 12]

#: Polyphony bins: 0..7 pitches sounding at a step, then 8 or more.
POLYPHONY_BINS = 9
#: Note-length bins, in grid steps: the lower edges (the last bin is open).
LENGTH_EDGES = (1, 2, 3, 4, 5, 7, 9, 13, 17, 33)


def bar_chroma(frames: np.ndarray, bar_steps: int) -> np.ndarray:
    """Sounding steps per pitch class and bar.

    Args:
        frames: [B, 128, W] frame planes (non-zero = sounding).

    Returns:
        float64 [B, bars, 12], bars = W // bar_steps (a partial last bar is left out).
    """
    b, _, width = frames.shape
    bars = width // bar_steps
    on = (frames[..., : bars * bar_steps] > 0).reshape(b, 128, bars, bar_steps).sum(-1)
    chroma = np.zeros((b, 12, bars))
    for pc in range(12):
        chroma[:, pc] = on[:, pc::12].sum(1)
    return chroma.transpose(0, 2, 1)


def pitch_classes_per_bar(frames: np.ndarray, bar_steps: int) -> float | None:
    """UPC as :class:`ScoreSheet` counts it: pitch classes sounding per non-empty bar of
    frame planes [B, 128, W] (None: no bar sounds)."""
    chroma = bar_chroma(frames, bar_steps)
    full = int(np.count_nonzero(chroma.sum(-1)))
    return int(np.count_nonzero(chroma)) / full if full else None


def tonal_centroids(chroma: np.ndarray) -> np.ndarray:
    """[..., 12] chroma -> [..., 6] tonal centroids (L1-normalised chroma; 0 for silence)."""
    total = chroma.sum(-1, keepdims=True)
    return (chroma / np.where(total > 0, total, 1)) @ TONNETZ.T


class ScoreSheet:
    """Running scores of one system's output against the real targets, per channel.

    Bars are 4 beats (windows start on downbeats; a partial last bar is left out). For
    each channel:

    * frame (tp, fp, fn) -> precision, recall, F1, Bay accuracy;
    * onset (matched, generated, real) within ``tolerance`` steps -> onset P / R / F1;
    * the MuseGAN metrics (Dong et al. 2018): EB, the share of empty bars; UPC, pitch
      classes used per non-empty bar; QN, the share of notes at least ``qualified_steps``
      long (MuseGAN: 3 of its 24 steps per beat, a 32nd note; on a sixteenth grid every
      note reaches that, so the default is half a beat, an eighth); TD, the tonal
      distance between the channel and the melody (the source), mean over bars where both
      sound. UPC and TD are None for drums;
    * histograms of polyphony (pitches sounding per step, 0 to ``POLYPHONY_BINS - 1``
      or more) and of note lengths (``LENGTH_EDGES``, in steps).
    """

    def __init__(self, channels: tuple[str, ...], steps_per_beat: int, *,
                 tolerance: int = 1, qualified_steps: int | None = None):
        self.channels, self.spb, self.tolerance = channels, steps_per_beat, tolerance
        self.qualified = qualified_steps or max(1, steps_per_beat // 2)
        n = len(channels)
        self.frame = np.zeros((n, 3), np.int64)
        self.onset = np.zeros((n, 3), np.int64)  # matched, generated, real
        self.bars = np.zeros(n, np.int64)
        self.empty_bars = np.zeros(n, np.int64)
        self.pitch_classes = np.zeros(n, np.int64)  # summed over non-empty bars
        self.notes = np.zeros(n, np.int64)
        self.lowest = np.full(n, 128, np.int64)
        self.highest = np.full(n, -1, np.int64)
        self.qualified_notes = np.zeros(n, np.int64)
        self.tonal = np.zeros(n)
        self.tonal_bars = np.zeros(n, np.int64)
        self.polyphony = np.zeros((n, POLYPHONY_BINS), np.int64)
        self.lengths = np.zeros((n, len(LENGTH_EDGES)), np.int64)
        self.windows = 0

    def add(self, generated: np.ndarray, real: np.ndarray,
            melody: np.ndarray | None = None) -> None:
        """Score a batch.

        Args:
            generated, real: uint8 [B, 2 * channels, 128, W] decoded planes.
            melody: uint8 [B, 2, 128, W], the melody (source) for the tonal distance.
        """
        bar = 4 * self.spb
        melody_centroid = melody_sounds = None
        if melody is not None:
            chroma = bar_chroma(melody[:, FRAME], bar)
            melody_centroid, melody_sounds = tonal_centroids(chroma), chroma.sum(-1) > 0
        for c, name in enumerate(self.channels):
            gen_frame, real_frame = generated[:, 2 * c + FRAME] > 0, real[:, 2 * c + FRAME] > 0
            tp = int(np.count_nonzero(gen_frame & real_frame))
            self.frame[c] += (tp, int(np.count_nonzero(gen_frame)) - tp,
                              int(np.count_nonzero(real_frame)) - tp)
            gen_onset, real_onset = generated[:, 2 * c + ONSET], real[:, 2 * c + ONSET]
            self.onset[c] += (sum(onset_matches(g, r, self.tolerance)
                                  for g, r in zip(gen_onset, real_onset, strict=True)),
                              int(np.count_nonzero(gen_onset)),
                              int(np.count_nonzero(real_onset)))
            chroma = bar_chroma(gen_frame, bar)  # [B, bars, 12]
            sounds = chroma.sum(-1) > 0
            self.bars[c] += sounds.size
            self.empty_bars[c] += int((~sounds).sum())
            drums = name == "drums"
            if not drums:
                self.pitch_classes[c] += int((chroma > 0).sum())
                if melody_centroid is not None:
                    both = sounds & melody_sounds
                    distance = np.linalg.norm(tonal_centroids(chroma) - melody_centroid, axis=-1)
                    self.tonal[c] += float(distance[both].sum())
                    self.tonal_bars[c] += int(both.sum())
            voices = gen_frame.sum(1).reshape(-1)  # pitches sounding per step
            self.polyphony[c] += np.bincount(np.minimum(voices, POLYPHONY_BINS - 1),
                                             minlength=POLYPHONY_BINS)
            for planes in generated[:, 2 * c : 2 * c + 2]:
                notes = planes_to_notes(planes)
                length = notes.end - notes.start
                self.notes[c] += len(length)
                if len(length):
                    self.lowest[c] = min(self.lowest[c], int(notes.pitch.min()))
                    self.highest[c] = max(self.highest[c], int(notes.pitch.max()))
                self.qualified_notes[c] += int(np.count_nonzero(length >= self.qualified))
                self.lengths[c] += np.bincount(
                    np.searchsorted(LENGTH_EDGES, length, side="right") - 1,
                    minlength=len(LENGTH_EDGES))
        self.windows += len(generated)

    def result(self, reference: ScoreSheet | None = None) -> dict:
        """The scores: ``overall`` (frame and onset scores over all channels) and
        ``channels`` (each channel's). With ``reference`` (the real targets' sheet), the
        histograms are also compared with it: total variation distance, 0 = the same
        distribution, 1 = disjoint."""
        channels = {}
        for c, name in enumerate(self.channels):
            channels[name] = self._channel(c, reference)
        overall = {f"frame_{k}": v for k, v in f1_scores(self.frame.sum(0)).items()}
        overall["frame_accuracy"] = bay_accuracy(self.frame.sum(0))
        overall.update(self._onset_scores(self.onset.sum(0)))
        if reference is not None:
            for key in ("polyphony_tv", "note_length_tv"):
                values = [ch[key] for ch in channels.values() if ch[key] is not None]
                overall[key] = float(np.mean(values)) if values else None
        return {"windows": self.windows, "overall": overall, "channels": channels}

    def _onset_scores(self, counts) -> dict[str, float]:
        matched, generated, real = (int(v) for v in counts)
        return {f"onset_{k}": v for k, v in
                f1_scores((matched, generated - matched, real - matched)).items()}

    def _channel(self, c: int, reference: ScoreSheet | None) -> dict:
        drums = self.channels[c] == "drums"
        full = self.bars[c] - self.empty_bars[c]
        out = {f"frame_{k}": v for k, v in f1_scores(self.frame[c]).items()}
        out["frame_accuracy"] = bay_accuracy(self.frame[c])
        out.update(self._onset_scores(self.onset[c]))
        out["empty_bars"] = float(self.empty_bars[c] / self.bars[c]) if self.bars[c] else None
        out["pitch_classes_per_bar"] = (None if drums or not full
                                        else float(self.pitch_classes[c] / full))
        out["qualified_notes"] = (float(self.qualified_notes[c] / self.notes[c])
                                  if self.notes[c] else None)
        out["notes"] = int(self.notes[c])
        out["pitch_range"] = ([int(self.lowest[c]), int(self.highest[c])]
                              if self.highest[c] >= 0 else None)
        out["tonal_distance"] = (float(self.tonal[c] / self.tonal_bars[c])
                                 if self.tonal_bars[c] else None)
        out["polyphony_histogram"] = self.polyphony[c].tolist()
        out["note_length_histogram"] = self.lengths[c].tolist()
        out["polyphony_tv"] = out["note_length_tv"] = None
        if reference is not None:
            out["polyphony_tv"] = _tv(self.polyphony[c], reference.polyphony[c])
            out["note_length_tv"] = _tv(self.lengths[c], reference.lengths[c])
        return out


def _tv(counts: np.ndarray, reference: np.ndarray) -> float | None:
    """Total variation distance between two histograms (None when either is empty)."""
    if not counts.sum() or not reference.sum():
        return None
    return float(0.5 * np.abs(counts / counts.sum() - reference / reference.sum()).sum())
