"""Evaluation metrics on hand-computed cases: perfect, empty and known partial overlaps."""

from __future__ import annotations

import math

import numpy as np
import pytest

from musicpairs.model.convert import blend_weights, window_starts
from musicpairs.model.evaluate import copy_baseline, pitch_class_profiles
from musicpairs.model.metrics import (
    ScoreSheet,
    bay_accuracy,
    f1_scores,
    onset_matches,
    tonal_centroids,
)
from musicpairs.model.rolls import decode_channel, decode_probabilities
from musicpairs.model.validate import decoding_scores, tune_decoding
from musicpairs.roll import FRAME, ONSET, planes_to_notes
from musicpairs.shards import ShardMeta

W = 32  # two bars of 4 beats at 4 steps per beat


def planes(*notes: tuple[int, int, int], velocity: int = 100, channels: int = 1,
           channel: int = 0) -> np.ndarray:
    """uint8 [1, 2 * channels, 128, W] with notes (pitch, start, end) in one channel."""
    out = np.zeros((1, 2 * channels, 128, W), np.uint8)
    for pitch, start, end in notes:
        out[0, 2 * channel + ONSET, pitch, start] = velocity
        out[0, 2 * channel + FRAME, pitch, start:end] = velocity
    return out


def scores(generated, real, melody=None, channels=("accompaniment",)) -> dict:
    reference = ScoreSheet(channels, 4)
    reference.add(real, real, melody)
    sheet = ScoreSheet(channels, 4)
    sheet.add(generated, real, melody)
    return sheet.result(reference=reference)


def test_ratios_of_counts():
    assert f1_scores((5, 0, 0)) == {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    assert f1_scores((0, 0, 7)) == {"precision": 1.0, "recall": 0.0, "f1": 0.0}
    assert f1_scores((0, 3, 0)) == {"precision": 0.0, "recall": 1.0, "f1": 0.0}
    assert f1_scores((2, 2, 2))["f1"] == 0.5
    assert f1_scores((0, 0, 0))["f1"] == 1.0  # nothing to find, nothing found
    assert bay_accuracy((2, 2, 2)) == pytest.approx(1 / 3)
    assert bay_accuracy((4, 0, 0)) == 1.0 and bay_accuracy((0, 1, 1)) == 0.0


def test_perfect_output_scores_one():
    real = planes((60, 0, 4), (64, 0, 4), (67, 4, 12), (48, 16, 20))
    got = scores(real.copy(), real)["overall"]
    for key in ("frame_precision", "frame_recall", "frame_f1", "frame_accuracy", "onset_f1"):
        assert got[key] == 1.0, key
    assert got["polyphony_tv"] == 0.0 and got["note_length_tv"] == 0.0


def test_empty_output_scores_zero():
    real = planes((60, 0, 4), (64, 2, 8))
    got = scores(np.zeros_like(real), real)
    overall, channel = got["overall"], got["channels"]["accompaniment"]
    assert overall["frame_recall"] == 0.0 and overall["frame_f1"] == 0.0
    assert overall["frame_accuracy"] == 0.0 and overall["onset_f1"] == 0.0
    assert channel["empty_bars"] == 1.0
    assert channel["pitch_classes_per_bar"] is None and channel["qualified_notes"] is None
    assert channel["polyphony_histogram"][0] == W and sum(channel["note_length_histogram"]) == 0


def test_partial_overlap_by_hand():
    real = planes((60, 0, 4))  # 4 frames, onset at 0
    generated = planes((60, 2, 6))  # 4 frames, 2 shared; onset 2 steps late
    got = scores(generated, real)["overall"]
    assert (got["frame_precision"], got["frame_recall"], got["frame_f1"]) == (0.5, 0.5, 0.5)
    assert got["frame_accuracy"] == pytest.approx(2 / 6)
    assert got["onset_f1"] == 0.0  # 2 steps apart: outside the tolerance

    generated = planes((60, 1, 5), (62, 0, 4))  # one onset 1 step late, one wrong pitch
    got = scores(generated, real)["overall"]
    assert got["onset_precision"] == 0.5 and got["onset_recall"] == 1.0
    assert got["onset_f1"] == pytest.approx(2 / 3)
    # frames: tp 3 (steps 1-3), fp 1 + 4, fn 1
    assert got["frame_precision"] == pytest.approx(3 / 8)
    assert got["frame_recall"] == pytest.approx(3 / 4)
    assert got["frame_accuracy"] == pytest.approx(3 / 9)


def test_onset_matching_is_maximal():
    def row(*steps):
        out = np.zeros((128, 16), np.uint8)
        out[60, list(steps)] = 90
        return out

    # Greedy by exact matches first would pair (1, 1) and leave 0 and 2 apart.
    assert onset_matches(row(1, 2), row(0, 1)) == 2
    assert onset_matches(row(0, 2), row(1, 3)) == 2
    assert onset_matches(row(5), row(3, 7)) == 0
    assert onset_matches(row(5), row(5), tolerance=0) == 1
    other = np.zeros((128, 16), np.uint8)
    other[61, 5] = 90
    assert onset_matches(row(5), other) == 0  # another pitch never matches
    # Onsets at the end of one pitch's row never reach the start of the next pitch's.
    end, start = np.zeros((128, 16), np.uint8), np.zeros((128, 16), np.uint8)
    end[60, 15], start[61, 0] = 90, 90
    assert onset_matches(end, start) == 0


def test_musegan_metrics_by_hand():
    # Bar 0: C-E-G chord (4 steps) plus a one-step C5; bar 1 empty.
    generated = planes((60, 0, 4), (64, 0, 4), (67, 0, 4), (72, 8, 9))
    melody = planes((60, 0, 16))  # C under the whole first bar
    got = scores(generated, generated, melody)["channels"]["accompaniment"]
    assert got["empty_bars"] == 0.5
    assert got["pitch_classes_per_bar"] == 3.0  # C, E, G (C5 is C again)
    assert got["qualified_notes"] == 0.75  # 3 of 4 notes last >= 2 steps (an eighth)
    # C-E-G (C counted over 5 steps, E and G over 4) against a bare C.
    chord = np.zeros(12)
    chord[[0, 4, 7]] = [5, 4, 4]
    c = np.zeros(12)
    c[0] = 1
    expected = np.linalg.norm(tonal_centroids(chord) - tonal_centroids(c))
    assert got["tonal_distance"] == pytest.approx(expected)
    assert got["polyphony_histogram"][:4] == [W - 5, 1, 0, 4]

    # A tritone apart: fifths and minor-thirds circles opposite, major thirds the same.
    tritone = planes((66, 0, 16))
    td = scores(tritone, tritone, melody)["channels"]["accompaniment"]["tonal_distance"]
    assert td == pytest.approx(math.sqrt(8))
    same = scores(melody.copy(), melody, melody)["channels"]["accompaniment"]["tonal_distance"]
    assert same == pytest.approx(0.0)


def test_drums_have_no_pitch_class_metrics():
    got = scores(planes((36, 0, 2)), planes((36, 0, 2)), planes((60, 0, 4)),
                 channels=("drums",))["channels"]["drums"]
    assert got["pitch_classes_per_bar"] is None and got["tonal_distance"] is None
    assert got["empty_bars"] == 0.5


def test_decoding_scores_and_tuning_by_hand():
    # One note at pitch 60, steps 0-3; the onset head is sure of it, the frame head less
    # so at step 3, and a spurious one-step note sits at pitch 62.
    real = np.zeros((1, 2, 128, 8), np.uint8)
    real[0, ONSET, 60, 0] = real[0, FRAME, 60, :4] = 90
    probs = np.zeros((1, 3, 128, 8), np.float32)
    probs[0, 0, 60, 0], probs[0, 1, 60, :4], probs[0, 2] = 0.9, [0.9, 0.8, 0.7, 0.3], 0.7
    probs[0, 0, 62, 5], probs[0, 1, 62, 5] = 0.6, 0.6
    planes = decode_channel(probs[:, 0], probs[:, 1], probs[:, 2], onset_threshold=0.5,
                            frame_threshold=0.5)
    scores = decoding_scores(planes, real)
    assert scores["frame_counts"] == [3, 1, 1]  # steps 0-2 right, pitch 62 wrong, step 3 missed
    assert scores["onset_f1"] == pytest.approx(2 / 3)  # one of two onsets right
    (best,) = tune_decoding(np.rint(probs * 255).astype(np.uint8), real, [None])
    # A frame threshold at or under 0.3 finds step 3; an onset threshold over 0.6 drops
    # pitch 62; the decoded notes then match the real one in number and length.
    assert best["frame_threshold"] <= 0.3 and 0.6 < best["onset_threshold"] <= 0.9
    assert best["frame_f1"] == 1.0 and best["onset_f1"] == 1.0
    assert best["note_ratio"] == 1.0 and best["polyphony_tv"] == 0.0
    # The pitch range kept is the training targets': it drops 62 too, at any length.
    (ranged,) = tune_decoding(np.rint(probs * 255).astype(np.uint8), real, [[55, 61]])
    assert ranged["pitch_range"] == [55, 61] and ranged["onset_f1"] == 1.0


def test_tuning_asks_for_the_real_pitch_classes_per_bar():
    # Three bars of sixteenths. The real part: C E D G C | C F A C | C E G C (13 notes,
    # UPC 10/3). G is sure of every note but bar 1's two 2-step notes, E and D, which it
    # swaps (each starts two steps off) at probability 0.6: an onset threshold over 0.6
    # drops both, which raises frame and onset F1 and keeps 11/13 of the notes, but
    # leaves bar 1 with two pitch classes (UPC 8/3, 20 % under the real 10/3).
    bar1 = [(60, 0, 4), (64, 4, 6), (62, 6, 8), (67, 8, 12), (60, 12, 16)]
    rest = [(60, 16, 20), (65, 20, 24), (69, 24, 28), (60, 28, 32),
            (60, 32, 36), (64, 36, 40), (67, 40, 44), (60, 44, 48)]
    real = np.zeros((1, 2, 128, 48), np.uint8)
    probs = np.zeros((1, 3, 128, 48), np.float32)
    swapped = {(64, 4, 6): (64, 6, 8), (62, 6, 8): (62, 4, 6)}
    for note in bar1 + rest:
        pitch, start, end = note
        real[0, ONSET, pitch, start], real[0, FRAME, pitch, start:end] = 90, 90
        p = 0.6 if note in swapped else 0.9
        pitch, start, end = swapped.get(note, note)
        probs[0, 0, pitch, start], probs[0, 1, pitch, start:end] = p, p
    probs[0, 2] = 0.7
    levels = np.rint(probs * 255).astype(np.uint8)
    (by_f1,) = tune_decoding(levels, real, [None])
    assert by_f1["onset_threshold"] > 0.6 and by_f1["pitch_classes_per_bar"] is None
    (by_upc,) = tune_decoding(levels, real, [None], bar_steps=[16])
    assert by_upc["onset_threshold"] <= 0.6 and by_upc["note_ratio"] == 1.0
    assert by_upc["pitch_classes_per_bar"] == by_upc["real_pitch_classes_per_bar"] == 10 / 3
    assert by_upc["onset_f1"] < by_f1["onset_f1"]
    # UPC is scored as evaluate's ScoreSheet scores it.
    decoded = decode_channel(probs[:, 0], probs[:, 1], probs[:, 2],
                             onset_threshold=by_f1["onset_threshold"], frame_threshold=0.5)
    sheet = ScoreSheet(("accompaniment",), 4)
    sheet.add(decoded, real)
    upc = sheet.result()["channels"]["accompaniment"]["pitch_classes_per_bar"]
    assert decoding_scores(decoded, real, bar_steps=16)["pitch_classes_per_bar"] == upc == 8 / 3


def test_decoding_takes_settings_per_channel():
    probs = np.zeros((6, 128, 8), np.float32)
    probs[0, 60, 0] = probs[1, 60, :4] = 0.4  # channel 0
    probs[3, 50, 0] = probs[4, 50, :4] = 0.4  # channel 1
    probs[[2, 5]] = 40 / 127
    settings = {"channels": [{"onset_threshold": 0.3, "frame_threshold": 0.3, "min_steps": 1},
                             {"onset_threshold": 0.5, "frame_threshold": 0.5, "min_steps": 1}]}
    out = decode_probabilities(probs, settings)
    assert out[FRAME, 60, :4].tolist() == [40] * 4 and out[ONSET, 60, 0] == 40
    assert not out[2:].any()


def test_copy_baseline_and_retrieval_features():
    meta = ShardMeta("melody2band", 4, (2, 128, W), (10, 128, W), ("melody",),
                     ("drums", "piano", "guitar", "bass", "strings"))
    source = planes((72, 0, 4), (5, 4, 8))
    out = copy_baseline(meta, source)
    assert out[0, 2 + FRAME, 60, :4].tolist() == [100] * 4  # piano, an octave down
    assert not out[0, 2:4, :, 4:].any()  # pitch 5 has no octave below: dropped
    assert not out[0, :2].any() and not out[0, 4:].any()
    v2v = ShardMeta("version2version", 4, (2, 128, W), (2, 128, W), ("version_a",),
                    ("version_b",))
    assert np.array_equal(copy_baseline(v2v, source), source)
    features = pitch_class_profiles(np.concatenate([source, planes((84, 0, 4), (17, 4, 8))]), 4)
    assert features.shape == (2, 8 * 12)
    assert np.allclose(features[0], features[1])  # octaves apart: the same profile
    assert np.isclose(np.linalg.norm(features[0]), 1.0)


def test_conversion_windows_cover_the_song_and_blend_to_the_same_value():
    downbeats = np.arange(0, 1000, 12)  # 3/4 bars
    starts = window_starts(downbeats, 1000, 64, 32)
    assert starts[0] == 0 and starts[-1] + 64 >= 1000
    assert all(0 < b - a < 64 for a, b in zip(starts, starts[1:], strict=False))
    assert set(starts) <= set(downbeats.tolist())
    assert window_starts(downbeats, 40, 64, 32) == [0]
    with pytest.raises(ValueError, match="hop"):
        window_starts(downbeats, 100, 64, 65)
    # Overlapping windows of one constant blend back to that constant.
    w = blend_weights(64)
    total, weight = np.zeros(1000 + 64), np.zeros(1000 + 64)
    for s in starts:
        total[s : s + 64] += 7 * w
        weight[s : s + 64] += w
    assert np.allclose(total[:1000] / weight[:1000], 7)


def test_restrikes_are_onset_peaks_only():
    probs = np.zeros((3, 128, 12), np.float32)
    probs[1, 60, :8] = 0.9
    probs[0, 60, :8] = [1.0, 0.95, 0.95, 0.95, 0.4, 0.99, 0.98, 0.97]  # peaks at 0 and 5
    probs[2, 60] = np.arange(12) / 127
    notes = planes_to_notes(decode_probabilities(probs, None))
    assert notes.start.tolist() == [0, 5] and notes.end.tolist() == [5, 8]
    assert notes.velocity.tolist() == [1, 5]  # the velocity predicted at each start
