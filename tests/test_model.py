"""The networks (against pix2pix's published sizes and receptive field), the roll
scaling and decoding, and the frame metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from musicpairs.loader import shift_pitches
from musicpairs.model import PatchGAN, UNet
from musicpairs.model.metrics import f1_scores
from musicpairs.model.rolls import (
    decode_channel,
    decode_probabilities,
    harmony_plane,
    model_input,
    pitched_planes,
    probabilities,
    target_probabilities,
    transposed_mean,
)
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


def test_max_filters_caps_the_inner_levels():
    # Levels of 8, 16, 32 filters, then 32 where pix2pix would have 64: every conv that
    # reaches the cap is thinner, the outer ones are not.
    capped, full = UNet(2, 2, ngf=8, depth=6, max_filters=32), UNet(2, 2, ngf=8, depth=6)
    widths = [m.out_channels for m in capped.modules() if isinstance(m, torch.nn.Conv2d)]
    assert widths == [8, 16, 32, 32, 32, 32]
    assert n_params(capped) < n_params(full)
    assert n_params(UNet(2, 2, ngf=8, depth=6, max_filters=64)) == n_params(full)
    assert capped(torch.randn(1, 2, 64, 64)).shape == (1, 2, 64, 64)
    with pytest.raises(ValueError, match="max_filters"):
        UNet(2, 2, ngf=8, depth=6, max_filters=4)


@pytest.mark.parametrize(("shape", "depth"), [((128, 256), 7), ((128, 64), 6), ((128, 32), 5)])
def test_unet_shapes(shape, depth):
    assert max_depth(*shape) == depth
    g = UNet(4, 6, ngf=4, depth=depth).eval()
    x = torch.randn(2, 4, *shape)
    y = g(x)
    assert y.shape == (2, 6, *shape)
    y.sum().backward()
    with pytest.raises(ValueError, match="multiple"):
        g(torch.randn(1, 4, 128, 48))


@pytest.mark.parametrize("shape", [(16, 32), (32, 16), (16, 16)])
def test_dead_kernel_taps_change_nothing(shape):
    # Depth 4 halves the short side 16 -> 1: the innermost level's convolutions (2 -> 1
    # and back) use only the middle two of their four taps on that side.
    g = UNet(3, 2, ngf=4, depth=4).eval()
    torch.manual_seed(0)
    for p in g.parameters():
        p.data.normal_()
    live = g.live_taps(*shape)
    rows = (1, 3) if shape[0] <= shape[1] else (0, 4)
    cols = (1, 3) if shape[1] <= shape[0] else (0, 4)
    assert live == {"down.3.1.weight": (*rows, *cols), "up.3.1.weight": (*rows, *cols)}
    x = torch.randn(2, 3, *shape)
    with torch.no_grad():
        before = g(x)
        weights = dict(g.named_parameters())
        for name, (h0, h1, w0, w1) in live.items():
            keep = torch.zeros_like(weights[name])
            keep[..., h0:h1, w0:w1] = 1
            weights[name].mul_(keep)
        assert torch.allclose(g(x), before, rtol=1e-5, atol=1e-5)
        # A live tap does matter.
        weights["down.3.1.weight"][..., rows[0], cols[0]] += 1
        assert not torch.allclose(g(x), before, rtol=1e-3, atol=1e-3)


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


def test_scaling_silence_is_zero():
    rolls = torch.tensor([0, 1, 64, 127], dtype=torch.uint8).view(1, 1, 1, 4).repeat(1, 2, 128, 1)
    x = model_input(rolls, harmony=False)
    assert x[0, 0, 0].tolist() == pytest.approx([0, 1 / 127, 64 / 127, 1])
    # Silence reads as the zero padding does: a silent roll is all zeros.
    assert not model_input(torch.zeros(1, 2, 128, 8, dtype=torch.uint8), True).any()


def test_harmony_plane_folds_pitch_classes_onto_every_octave():
    source = torch.zeros(1, 2, 128, 4, dtype=torch.uint8)
    source[0, 1, 60, 0] = 90  # C4 frame at step 0
    source[0, 1, 67, 1:3] = 90  # G4 at steps 1-2
    source[0, 0, 64, 3] = 90  # an onset alone is not a sounding frame
    plane = harmony_plane(source)[0, 0]
    assert plane.shape == (128, 4)
    assert torch.nonzero(plane[:, 0]).flatten().tolist() == list(range(0, 128, 12))
    assert torch.nonzero(plane[:, 1]).flatten().tolist() == list(range(7, 128, 12))
    assert not plane[:, 3].any()
    assert model_input(source, True).shape == (1, 3, 128, 4)


def test_transposed_mean_moves_each_answer_back():
    source = torch.zeros(1, 2, 128, 3, dtype=torch.uint8)
    source[0, 1, 60, 0] = 90
    source[0, 1, 127, 1] = 90  # moved up, it falls off the top
    up = shift_pitches(source, 2)
    assert up[0, 1, 62, 0] == 90 and up[0, 1, :, 1].sum() == 0
    assert torch.equal(shift_pitches(up, -2)[0, 1, :, 0], source[0, 1, :, 0])
    assert shift_pitches(source, 0) is source
    # Drum planes hold instruments: a transposition leaves them where they are.
    drums = torch.zeros(1, 4, 128, 3, dtype=torch.uint8)
    drums[0, :, 36, 0] = 90
    mask = pitched_planes(("melody", "drums"), 2)
    assert mask.tolist() == [True, True, False, False]
    moved = shift_pitches(drums, 3, mask)
    assert moved[0, :2, 39, 0].tolist() == [90, 90] and moved[0, 2:, 36, 0].tolist() == [90, 90]

    # A model that answers in the key it is asked in (here: the source's frames one
    # octave down) gives the same answer averaged over keys, away from the ends.
    def octave_down(x: torch.Tensor) -> torch.Tensor:
        return shift_pitches(x[:, 1:2].float(), -12)

    mean = transposed_mean(octave_down, source, 2)
    assert torch.equal(mean[0, 0, :, 0], octave_down(source)[0, 0, :, 0])
    assert transposed_mean(octave_down, source, 0).equal(octave_down(source))
    # One that ignores its input is averaged with its answer moved: 1 of 5 keys at
    # pitch 60 + s.
    def constant(x: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(x.shape[0], 1, 128, x.shape[-1])
        out[:, :, 60] = 1
        return out

    mean = transposed_mean(constant, source, 2)[0, 0, :, 0]
    assert torch.nonzero(mean).flatten().tolist() == [58, 59, 60, 61, 62]
    assert torch.allclose(mean[58:63], torch.full((5,), 0.2))


def test_target_probabilities_and_heads():
    target = torch.zeros(1, 2, 128, 4, dtype=torch.uint8)
    target[0, 0, 60, 0] = 127
    target[0, 1, 60, :2] = 127
    real = target_probabilities(target)
    assert real.shape == (1, 3, 128, 4)
    assert real[0, :, 60].tolist() == [[1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 0, 0]]
    raw = torch.zeros(1, 2, 128, 4)  # l1: onset and frame velocities, read as both
    assert probabilities(raw, "l1").shape == (1, 3, 128, 4)
    assert torch.equal(probabilities(raw, "l1")[:, 2], probabilities(raw, "l1")[:, 1])


def _planes(notes, width=32):
    """One channel's planes from (start, end, pitch, velocity) tuples."""
    out = np.zeros((1, 2, 128, width), np.uint8)
    s, e, p, v = (np.array(c) for c in zip(*notes, strict=True))
    _paint(out, np.zeros(len(s), np.int64), s.astype(np.int64), e.astype(np.int64),
           p.astype(np.uint8), v.astype(np.uint8))
    return out[0]


def _probs(planes):
    """Perfect probabilities of one channel's planes: onset, frame, velocity / 127."""
    return np.stack([(planes[0] > 0), (planes[1] > 0), planes[1] / 127]).astype(np.float32)


def _notes(planes):
    n = planes_to_notes(planes)
    return sorted(zip(n.start.tolist(), n.end.tolist(), n.pitch.tolist(),
                      n.velocity.tolist(), strict=True))


def test_decoding_round_trip_restrikes_and_hysteresis():
    real = _planes([(0, 4, 60, 100), (4, 8, 60, 50), (2, 30, 64, 80), (10, 11, 30, 20)])
    settings = {"channels": [{"onset_threshold": 0.5, "frame_threshold": 0.5,
                              "min_steps": 1}]}
    assert np.array_equal(decode_probabilities(_probs(real), settings), real)
    # Frames below the threshold end a note; a peak of the onset plane inside a run
    # restrikes; onset probability held high over a note is one onset (its peak).
    p = _probs(real) * 0.9 + 0.05
    p[0, 64, 20] = 0.8
    p[0, 60, 0:3] = 0.9
    out = decode_probabilities(p, settings)
    assert [n[:3] for n in _notes(out)] == [(0, 4, 60), (2, 20, 64), (4, 8, 60),
                                            (10, 11, 30), (20, 30, 64)]
    # A frame with no onset does not start a note, except one sounding from step 0 (a
    # note that began before the window), which gets no onset cell.
    soft = np.zeros((3, 128, 8), np.float32)
    soft[1, 70, 2:5] = 0.9
    soft[1, 72, 0:3] = 0.9
    soft[2] = 0.5
    out = decode_probabilities(soft, None)
    assert not out[:, 70].any()
    assert out[0, 72].tolist() == [0] * 8
    assert out[1, 72].tolist() == [64, 64, 64, 0, 0, 0, 0, 0]


def test_decoding_min_steps_restrikes_voices_and_pitch_range():
    real = _planes([(0, 1, 50, 90), (2, 6, 50, 90), (0, 8, 90, 90), (3, 5, 40, 90)], 8)
    p = _probs(real)
    kept = decode_channel(p[0], p[1], p[2], onset_threshold=0.5, frame_threshold=0.5,
                          min_steps=2, pitch_range=(45, 80))
    # The one-step note is held to two steps; pitches 90 and 40 are out of range.
    assert [n[:3] for n in _notes(kept)] == [(0, 2, 50), (2, 6, 50)]
    # The same with a batch axis in front.
    batch = decode_channel(p[None, 0], p[None, 1], p[None, 2], onset_threshold=0.5,
                           frame_threshold=0.5, min_steps=2, pitch_range=(45, 80))
    assert np.array_equal(batch[0], kept)
    # An onset peak inside a held note restrikes only from the restrike threshold.
    held = np.zeros((3, 128, 8), np.float32)
    held[1, 60], held[2, 60] = 0.9, 0.5
    held[0, 60] = [0.9, 0.1, 0.1, 0.1, 0.6, 0.1, 0.1, 0.1]
    settings = {"onset_threshold": 0.5, "frame_threshold": 0.5}
    restruck = decode_channel(*held, **settings)
    assert [n[:2] for n in _notes(restruck)] == [(0, 4), (4, 8)]
    one = decode_channel(*held, **settings, restrike_threshold=0.8)
    assert [n[:2] for n in _notes(one)] == [(0, 8)]
    # At most two voices: the likeliest frames of each step.
    chord = np.zeros((3, 128, 4), np.float32)
    chord[0, [60, 64, 67], 0] = 0.9
    chord[1, [60, 64, 67]] = np.array([0.6, 0.9, 0.8])[:, None]
    two = decode_channel(*chord, **settings, max_voices=2)
    assert sorted({n[2] for n in _notes(two)}) == [64, 67]


def test_decoding_reads_probabilities_as_tuning_kept_them():
    # Tuning keeps probabilities as uint8 (p * 255). An onset peak of 0.9505 inside a held
    # note is 242/255 = 0.949 there: under a restrike threshold of 0.95 it restrikes
    # nothing, and decode_probabilities must agree, whatever float it is given.
    held = np.zeros((3, 128, 8), np.float32)
    held[1, 60], held[2, 60] = 0.9, 0.5
    held[0, 60] = [0.9, 0.1, 0.1, 0.1, 0.9505, 0.1, 0.1, 0.1]
    settings = {"onset_threshold": 0.5, "frame_threshold": 0.5, "min_steps": 1,
                "restrike_threshold": 0.95}
    tuned = np.rint(held * 255).astype(np.uint8).astype(np.float32) / 255
    as_tuned = decode_channel(*tuned, **settings)
    assert [n[:2] for n in _notes(as_tuned)] == [(0, 8)]
    assert np.array_equal(decode_probabilities(held, {"channels": [settings]}), as_tuned)
    # At random probabilities too, at several of the thresholds tuning tries.
    rng = np.random.default_rng(0)
    p = rng.random((3, 128, 64)).astype(np.float32)
    for value in (0.05, 0.3, 0.7, 0.8, 0.9, 0.95, 0.98):
        s = {"onset_threshold": value, "frame_threshold": value, "min_steps": 1,
             "restrike_threshold": 0.99}
        q = np.rint(p * 255).astype(np.uint8).astype(np.float32) / 255
        assert np.array_equal(decode_probabilities(p, {"channels": [s]}),
                              decode_channel(*q, **s))


def test_frame_scores_hand_computed():
    assert f1_scores([2, 2, 2]) == {"precision": 0.5, "recall": 0.5, "f1": 0.5}
    assert f1_scores([4, 0, 0])["f1"] == 1.0
    assert f1_scores([0, 0, 4])["f1"] == 0.0
    assert f1_scores([0, 0, 0])["f1"] == 1.0  # nothing to find, nothing found
