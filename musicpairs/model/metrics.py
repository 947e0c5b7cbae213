"""Scores of generated rolls against real ones."""

from __future__ import annotations

import torch

from musicpairs.roll import FRAME


def frame_counts(generated: torch.Tensor, real: torch.Tensor,
                 threshold: float) -> torch.Tensor:
    """Frame-level true positives, false positives and false negatives.

    Args:
        generated: float velocities (B, 2 * channels, 128, W), 0-127.
        real: uint8 rolls of the same shape.
        threshold: Velocity from which a generated frame counts as sounding.

    Returns:
        int64 [3]: (tp, fp, fn) over every frame plane cell.
    """
    on = generated[:, FRAME::2] >= threshold
    truth = real[:, FRAME::2] > 0
    tp = (on & truth).sum()
    return torch.stack([tp, on.sum() - tp, truth.sum() - tp]).long().cpu()


def f1_scores(counts) -> dict[str, float]:
    """Precision, recall and F1 from (tp, fp, fn); each is 1.0 when its denominator is 0
    (nothing predicted and nothing to find is a perfect score)."""
    tp, fp, fn = (int(v) for v in counts)
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0
    return {"precision": precision, "recall": recall, "f1": f1}
