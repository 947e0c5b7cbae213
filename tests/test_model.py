"""The networks (against pix2pix's published sizes and receptive field), the roll
scaling and decoding, and the frame metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from musicpairs.model import PatchGAN, UNet
from musicpairs.model.metrics import f1_scores, frame_counts
from musicpairs.model.rolls import generated_to_planes, to_model, to_velocity
from musicpairs.model.unet import max_depth
from musicpairs.roll import _paint, planes_to_notes


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_paper_sizes():
    # pix2pix prints 54.414 M for unet_256 and 2.769 M for the basic D (3 + 3 channels).
    assert round(n_params(UNet(3, 3, ngf=64, depth=8)) / 1e3) == 54414
    assert round(n_params(PatchGAN(6, ndf=64, n_layers=3)) / 1e3) == 2769
    # InstanceNorm has no affine parameters, and the convolutions before it get biases.
    assert n_params(UNet(3, 3, depth=8, norm="instance")) != n_params(UNet(3, 3, depth=8))


@pytest.mark.parametrize(("shape", "depth"), [((128, 256), 7), ((128, 64), 6), ((128, 32), 5)])
def test_unet_shapes(shape, depth):
    assert max_depth(*shape) == depth
    g = UNet(4, 6, ngf=4, depth=depth).eval()
    x = torch.randn(2, 4, *shape)
    y = g(x)
    assert y.shape == (2, 6, *shape)
    assert y.abs().max() <= 1  # tanh
    y.sum().backward()
    with pytest.raises(ValueError, match="multiple"):
        g(torch.randn(1, 4, 128, 48))


def test_unet_dropout_as_pix2pix():
    # Dropout sits in the decoders of levels 4 .. depth-2: three at depth 8, none at 5.
    def dropouts(depth):
        return sum(isinstance(m, torch.nn.Dropout) for m in UNet(2, 2, ngf=2, depth=depth)
                   .modules())
    assert (dropouts(8), dropouts(7), dropouts(5)) == (3, 2, 0)
    assert not any(isinstance(m, torch.nn.Dropout)
                   for m in UNet(2, 2, ngf=2, depth=8, dropout=0).modules())


def test_unet_train_mode_uses_dropout_eval_mode_is_deterministic():
    torch.manual_seed(0)
    g = UNet(2, 2, ngf=4, depth=6)
    x = torch.randn(2, 2, 128, 64)
    assert not torch.equal(g(x), g(x))
    g.eval()
    assert torch.equal(g(x), g(x))


def test_patchgan_receptive_field_is_70():
    d = PatchGAN(2, ndf=4, n_layers=3).eval()
    x = torch.randn(1, 2, 128, 128, requires_grad=True)
    out = d(x)
    assert out.shape == (1, 1, 14, 14)
    out[0, 0, 7, 7].backward()
    rows = torch.nonzero(x.grad.abs().sum(dim=(0, 1)).sum(dim=1)).flatten()
    cols = torch.nonzero(x.grad.abs().sum(dim=(0, 1)).sum(dim=0)).flatten()
    assert int(rows[-1] - rows[0]) + 1 == 70
    assert int(cols[-1] - cols[0]) + 1 == 70


def test_scaling():
    rolls = torch.tensor([0, 1, 64, 127], dtype=torch.uint8)
    x = to_model(rolls)
    assert x[0] == -1 and x[-1] == 1
    assert torch.allclose(to_velocity(x), rolls.float(), atol=1e-4)


def _planes(notes, width=32):
    """One channel's planes from (start, end, pitch, velocity) tuples."""
    out = np.zeros((1, 2, 128, width), np.uint8)
    s, e, p, v = (np.array(c) for c in zip(*notes, strict=True))
    _paint(out, np.zeros(len(s), np.int64), s.astype(np.int64), e.astype(np.int64),
           p.astype(np.uint8), v.astype(np.uint8))
    return out[0]


def test_generated_to_planes_round_trip_and_thresholds():
    real = _planes([(0, 4, 60, 100), (4, 8, 60, 50), (2, 30, 64, 80), (10, 11, 30, 20)])
    assert np.array_equal(generated_to_planes(real.astype(np.float32)), real)
    # Noise below the frame threshold is silence; a loud onset inside a run restrikes.
    noisy = real.astype(np.float32) + 6.0
    noisy[0, 64, 20] = 90
    out = generated_to_planes(noisy, frame_threshold=12, onset_threshold=40)
    notes = planes_to_notes(out)
    assert sorted(zip(notes.start.tolist(), notes.end.tolist(), notes.pitch.tolist(),
                      strict=True)) == [(0, 4, 60), (2, 20, 64), (4, 8, 60), (10, 11, 30),
                                        (20, 30, 64)]
    # A frame run without an onset starts a note at its frame velocity.
    soft = np.zeros((2, 128, 8), np.float32)
    soft[1, 70, 2:5] = 40
    out = generated_to_planes(soft)
    assert out[0, 70].tolist() == [0, 0, 40, 0, 0, 0, 0, 0]
    assert out[1, 70].tolist() == [0, 0, 40, 40, 40, 0, 0, 0]


def test_frame_scores_hand_computed():
    real = torch.zeros(1, 2, 128, 4, dtype=torch.uint8)
    real[0, 1, 60, :] = 80  # four sounding frames
    perfect = real.float()
    assert f1_scores(frame_counts(perfect, real, 16)) == {"precision": 1.0, "recall": 1.0,
                                                          "f1": 1.0}
    empty = torch.zeros_like(perfect)
    assert f1_scores(frame_counts(empty, real, 16))["f1"] == 0.0
    half = torch.zeros_like(perfect)
    half[0, 1, 60, :2] = 70  # two right
    half[0, 1, 61, :2] = 70  # two wrong
    half[0, 0, 62, :] = 127  # onset planes are not frames
    counts = frame_counts(half, real, 16)
    assert counts.tolist() == [2, 2, 2]
    assert f1_scores(counts) == {"precision": 0.5, "recall": 0.5, "f1": 0.5}
    assert f1_scores([0, 0, 0])["f1"] == 1.0  # nothing to find, nothing found
