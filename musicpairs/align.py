"""Align two versions of a song: beat-synchronous chroma, DTW, confidence, warping."""

from __future__ import annotations

import numpy as np

from musicpairs.roll import FRAME


def beat_chroma(planes: np.ndarray, steps_per_beat: int) -> np.ndarray:
    """Pitch-class energy of each beat, L2-normalized (silent beats stay zero).

    Args:
        planes: uint8 [2, 128, T], one merged channel.

    Returns:
        float64 [n_beats, 12].
    """
    n_steps = planes.shape[-1]
    n_beats = -(-n_steps // steps_per_beat)
    frame = np.zeros((128, n_beats * steps_per_beat), np.float64)
    frame[:, :n_steps] = planes[FRAME] > 0
    per_beat = frame.reshape(128, n_beats, steps_per_beat).sum(axis=2)  # (128, beats)
    chroma = np.zeros((12, n_beats))
    np.add.at(chroma, np.arange(128) % 12, per_beat)
    norm = np.linalg.norm(chroma, axis=0)
    chroma[:, norm > 0] /= norm[norm > 0]
    return chroma.T


def chroma_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine distance between beats: [n, 12] x [m, 12] -> float64 [n, m].

    Two silent beats are 0 apart; a silent beat and a sounding one are 1 apart.
    """
    d = 1.0 - a @ b.T
    silent_a, silent_b = ~a.any(axis=1), ~b.any(axis=1)
    d[np.ix_(silent_a, silent_b)] = 0.0
    return np.clip(d, 0.0, 1.0)


def dtw(cost: np.ndarray, penalty: float = 0.0) -> tuple[np.ndarray, float]:
    """Dynamic time warping from (0, 0) to (n-1, m-1) with steps (1,1), (1,0), (0,1).

    A horizontal or vertical step costs ``penalty`` more than its cell: without it, two
    unrelated songs sharing a key align cheaply by stalling on their best-matching beats.
    Each row is computed at once: with C the row's cumulative (penalized) cost and ``a``
    the best entry from the row above, D[i, j] = C[j] + min over k <= j of (a[k] - C[k]).

    Returns:
        (path int64 [L, 2] of (i, j), total cost along it, penalties included).
    """
    n, m = cost.shape
    acc = np.empty((n, m))
    acc[0] = np.cumsum(cost[0] + penalty) - penalty
    for i in range(1, n):
        above = acc[i - 1]
        diag = np.concatenate(([np.inf], above[:-1]))
        a = cost[i] + np.minimum(above + penalty, diag)
        c = np.cumsum(cost[i] + penalty)
        acc[i] = c + np.minimum.accumulate(a - c)
    i, j = n - 1, m - 1
    path = [(i, j)]
    while i > 0 or j > 0:
        if i == 0:
            j -= 1
        elif j == 0:
            i -= 1
        else:
            k = int(np.argmin((acc[i - 1, j - 1], acc[i - 1, j] + penalty,
                               acc[i, j - 1] + penalty)))
            i, j = (i - 1, j - 1) if k == 0 else (i - 1, j) if k == 1 else (i, j - 1)
        path.append((i, j))
    return np.array(path[::-1], np.int64), float(acc[n - 1, m - 1])


def alignment_confidence(cost: np.ndarray, path: np.ndarray, total: float) -> float:
    """c = clip(2 * (1 - s), 0, 1), s = mean cost along the path / mean cost of the
    compared region (the LMD matching score's normalization)."""
    region = cost[path[0, 0] : path[-1, 0] + 1, path[0, 1] : path[-1, 1] + 1]
    mean = float(region.mean())
    if mean <= 0:
        return 1.0
    s = (total / len(path)) / mean
    return float(np.clip(2.0 * (1.0 - s), 0.0, 1.0))


def align_versions(
    source: np.ndarray, target: np.ndarray, steps_per_beat: int
) -> tuple[np.ndarray, float]:
    """Warp ``target`` onto ``source``'s beats.

    Args:
        source, target: uint8 [C, 128, T] and [C, 128, T'], channels of (onset, frame).

    Returns:
        (target warped to the source grid, uint8 [C, 128, T]; confidence in [0, 1]).
        Each source beat takes the content of the first target beat DTW matched to it.
    """
    ca, cb = beat_chroma(source[:2], steps_per_beat), beat_chroma(target[:2], steps_per_beat)
    if len(ca) == 0 or len(cb) == 0:
        return np.zeros_like(source), 0.0
    cost = chroma_distance(ca, cb)
    path, total = dtw(cost, penalty=float(np.median(cost)))
    confidence = alignment_confidence(cost, path, total)
    first = np.full(len(ca), -1, np.int64)
    for i, j in path[::-1]:
        first[i] = j
    n_steps = source.shape[-1]
    spb = steps_per_beat
    padded = np.zeros((*target.shape[:-1], len(cb) * spb), np.uint8)
    padded[..., : target.shape[-1]] = target
    beats = padded.reshape(*target.shape[:-1], len(cb), spb)
    warped = beats[..., first, :].reshape(*target.shape[:-1], len(ca) * spb)
    return np.ascontiguousarray(warped[..., :n_steps]), confidence
