"""``musicpairs evaluate``, ``convert`` and ``quickstart``: scores against baselines,
converted MIDI files, the one-line errors, and build -> train -> evaluate -> convert."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from click.testing import CliRunner

from musicpairs import audio
from musicpairs.cli import main
from musicpairs.loader import PairStream
from musicpairs.midi import Notes, Score, TempoChange, TimeSignature, Track, read_midi, write_midi
from musicpairs.model import load_checkpoint

from browser import open_page
from conftest import synth_song

TINY = ["--ngf", "4", "--ndf", "4", "--batch-size", "2", "--device", "cpu",
        "--num-workers", "0"]


def invoke(*args: str):
    return CliRunner().invoke(main, list(args))


def one_line_error(result) -> str:
    assert result.exit_code != 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert "Traceback" not in result.output
    return lines[0]


@pytest.fixture(scope="module")
def run(small_dataset, tmp_path_factory) -> Path:
    """A 4-step run on the small dataset, evaluated (thresholds tuned) at steps 2 and 4."""
    out = tmp_path_factory.mktemp("evaluate") / "run"
    result = invoke("train", "--data", str(small_dataset), "--out", str(out), "--steps", "4",
                    "--checkpoint-every", "2", "--eval-every", "2", "--sample-count", "0",
                    *TINY)
    assert result.exit_code == 0, result.output
    return out


def edited_checkpoint(run: Path, tmp_path: Path, **changes) -> Path:
    """A copy of the run's last.pt with top-level entries (or meta fields) replaced."""
    state = load_checkpoint(run / "last.pt")
    meta = changes.pop("meta", None)
    if meta:
        state["meta"] = {**state["meta"], **meta}
    state.update(changes)
    path = tmp_path / "edited" / "last.pt"
    path.parent.mkdir(exist_ok=True)
    torch.save(state, path)
    return path


def test_evaluate_scores_model_compare_and_baselines(run, small_dataset, tmp_path):
    out = tmp_path / "eval"
    result = invoke("evaluate", "--checkpoint", str(run / "last.pt"), "--data",
                    str(small_dataset), "--compare", str(run / "step-00000002.pt"),
                    "--out", str(out), "--json")
    assert result.exit_code == 0, result.output
    scores = json.loads(result.output)
    test_pairs = sum(pq.read_metadata(f).num_rows
                     for f in (small_dataset / "test").glob("*.parquet"))
    assert scores["windows"] == test_pairs > 0
    systems = scores["systems"]
    assert list(systems) == ["run", "run/step-00000002", "empty", "copy", "retrieval", "real"]
    state = load_checkpoint(run / "last.pt")
    assert systems["run"]["thresholds"] == state["decode"]  # tuned while training
    assert systems["run"]["step"] == 4 and systems["run/step-00000002"]["step"] == 2
    assert not systems["run"]["thresholds_tuned_now"]
    real, empty = systems["real"]["overall"], systems["empty"]["overall"]
    assert real["frame_f1"] == real["onset_f1"] == real["frame_accuracy"] == 1.0
    assert real["polyphony_tv"] == real["note_length_tv"] == 0.0
    assert empty["frame_recall"] == empty["frame_f1"] == empty["onset_f1"] == 0.0
    assert systems["empty"]["channels"]["accompaniment"]["empty_bars"] == 1.0
    assert 0 < systems["copy"]["overall"]["frame_f1"] < 1
    retrieval = systems["retrieval"]
    assert retrieval["pool"] == sum(pq.read_metadata(f).num_rows
                                    for f in (small_dataset / "train").glob("*.parquet"))
    # Retrieved targets are real accompaniments: their bars and notes look like the real.
    assert retrieval["overall"]["frame_f1"] > 0
    for name in ("run", "run/step-00000002"):
        overall = systems[name]["overall"]
        assert 0 <= overall["frame_f1"] <= 1 and 0 <= overall["onset_f1"] <= 1
    assert json.loads((out / "metrics.json").read_text()) == scores
    assert (out / "examples.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    table = invoke("evaluate", "--checkpoint", str(run / "last.pt"), "--data",
                   str(small_dataset), "--baselines", "empty", "--out", str(out))
    assert table.exit_code == 0, table.output
    assert "frame F1" in table.output and "accompaniment" in table.output
    rows = [line.split()[0] for line in table.output.splitlines() if line.strip()]
    assert "run" in rows and "empty" in rows and "copy" not in rows


def test_evaluate_tunes_thresholds_when_the_checkpoint_has_none(run, small_dataset, tmp_path):
    bare = edited_checkpoint(run, tmp_path, decode=None)
    result = invoke("evaluate", "--checkpoint", str(bare), "--data", str(small_dataset),
                    "--baselines", "none", "--out", str(tmp_path / "e"), "--json")
    assert result.exit_code == 0, result.output
    model = json.loads(result.output)["systems"]["edited"]
    assert model["thresholds_tuned_now"]
    # The same weights on the same valid pairs: the thresholds the run stored.
    stored = load_checkpoint(run / "last.pt")["decode"]
    assert model["thresholds"]["channels"] == stored["channels"]
    # --tune tunes again a checkpoint that has thresholds.
    result = invoke("evaluate", "--checkpoint", str(run / "last.pt"), "--data",
                    str(small_dataset), "--baselines", "none", "--tune", "--out",
                    str(tmp_path / "e"), "--json")
    assert result.exit_code == 0, result.output
    model = json.loads(result.output)["systems"]["run"]
    assert model["thresholds_tuned_now"] and model["thresholds"]["channels"] == stored["channels"]


def test_evaluate_refuses_a_checkpoint_of_other_pairs(run, small_dataset, tmp_path):
    other = edited_checkpoint(run, tmp_path, meta={"source_shape": [2, 128, 128],
                                                   "target_shape": [2, 128, 128]})
    line = one_line_error(invoke("evaluate", "--checkpoint", str(other), "--data",
                                 str(small_dataset)))
    assert "trained on other pairs" in line and "source_shape [2, 128, 128]" in line
    line = one_line_error(invoke("evaluate", "--checkpoint", str(run / "last.pt"), "--data",
                                 str(small_dataset), "--baselines", "copy,oracle"))
    assert "oracle" in line


@pytest.fixture
def song(tmp_path) -> Path:
    path = tmp_path / "song.mid"
    path.write_bytes(synth_song(99, bars=30))
    return path


def test_convert_keeps_tempo_meter_and_melody(run, song, tmp_path):
    out, png = tmp_path / "out.mid", tmp_path / "out.png"
    result = invoke("convert", str(song), "--checkpoint", str(run / "last.pt"), "-o", str(out),
                    "--render", str(png), "--device", "cpu", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    given, converted = read_midi(song), read_midi(out)
    assert converted.ticks_per_quarter == given.ticks_per_quarter
    assert converted.tempos == given.tempos
    assert converted.time_signatures == given.time_signatures
    melody = next(t for t in given.tracks if t.name == "Melody")
    kept = [t for t in converted.tracks if t.name == "Melody"]
    assert len(kept) == 1 and kept[0].notes.equals(melody.notes)
    assert summary["source_tracks"] == [{"index": given.tracks.index(melody), "name": "Melody"}]
    generated = [t for t in converted.tracks if t.name == "accompaniment"]
    assert len(generated) == 1 and len(generated[0].notes) == summary["generated_notes"][
        "accompaniment"] > 0
    # Generated notes lie within the song and on the grid (sixteenths of the input's tpq).
    step = given.ticks_per_quarter // 4
    assert int(generated[0].notes.end.max()) <= given.end_tick + step
    assert not (generated[0].notes.start % step).any()
    # 30 bars = 480 steps in windows of 256 starting every 128 steps (on downbeats).
    assert summary["windows"] == 3 and summary["steps"] == 480
    assert png.read_bytes()[:4] == b"\x89PNG"

    # --melody-track picks the track itself: the bass (a plausible line) becomes the source.
    bass = next(i for i, t in enumerate(given.tracks) if t.name == "Bass")
    result = invoke("convert", str(song), "--checkpoint", str(run / "last.pt"), "-o",
                    str(out), "--melody-track", str(bass), "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "from track " + str(bass) + " Bass" in result.output
    names = [t.name for t in read_midi(out).tracks]
    assert sorted(names) == ["Bass", "accompaniment"]


def test_pack_halves_the_export_and_converts_alike(run, small_dataset, song, tmp_path):
    from musicpairs.model import Generator, load_generator
    from musicpairs.model.checkpoint import generator_weights

    packed = tmp_path / "packed.pt"
    result = invoke("pack", str(run / "generator.pt"), "-o", str(packed))
    assert result.exit_code == 0, result.output
    assert "weights as int8" in result.output
    export = torch.load(run / "generator.pt", weights_only=True)
    small = torch.load(packed, weights_only=True)
    assert small["int8"] and all(q.dtype == torch.int8 for q in small["int8"].values())
    for key in ("config", "meta", "step", "decode", "pitch_ranges"):
        assert small[key] == export[key]
    # Every weight within half a quantization step of the export's (fp16 scales), but
    # the kernel taps that never meet a real cell at the model's size: those read as 0.
    original, restored = generator_weights(export), generator_weights(small)
    assert original.keys() == restored.keys()
    assert small["int8_taps"], "the tiny U-Net's innermost level halves 2 rows to 1"
    live = {}
    for name in small["int8"]:
        step = small["int8_scales"][name].float().max()
        h0, h1, w0, w1, kh, kw = small["int8_taps"].get(name, [0, 4, 0, 4, 4, 4])
        live[name] = original[name][..., h0:h1, w0:w1]
        assert restored[name].shape == original[name].shape and (kh, kw) == (4, 4)
        gap = restored[name][..., h0:h1, w0:w1] - live[name].float()
        assert gap.abs().max() <= 0.51 * step + 1e-3
        dead = restored[name].clone()
        dead[..., h0:h1, w0:w1] = 0
        assert not dead.any()
    packed_bytes = sum(t.numel() * t.element_size() for t in small["int8"].values())
    assert packed_bytes * 2 == sum(w.numel() * 2 for w in live.values())
    load_generator(packed)  # the weights fit the config
    # --tune-on tunes the decoding again, on the packed weights.
    retuned = tmp_path / "retuned.pt"
    result = invoke("pack", str(run / "last.pt"), "-o", str(retuned), "--tune-on",
                    str(small_dataset))
    assert result.exit_code == 0, result.output
    decode = torch.load(retuned, weights_only=True)["decode"]
    assert decode["channels"] and decode["samples"] > 0

    # G's probabilities move by a little, not enough to change the decoded notes much.
    batch = next(iter(PairStream(str(small_dataset), "test", shuffle=False, batch_size=8)))
    a = Generator(run / "generator.pt").probabilities(batch["source"])
    b = Generator(packed).probabilities(batch["source"])
    assert (a - b).abs().max() < 0.05
    out = tmp_path / "packed.mid"
    result = invoke("convert", str(song), "--checkpoint", str(packed), "-o", str(out),
                    "--device", "cpu", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["generated_notes"]["accompaniment"] > 0


def test_shipped_models_by_name(run, song, tmp_path, monkeypatch):
    from musicpairs.model import load_pretrained, pretrained

    shelf = tmp_path / "pretrained"
    shelf.mkdir()
    assert invoke("pack", str(run / "generator.pt"), "-o", str(shelf / "tiny.pt")).exit_code == 0
    scores = {"model": {"frame_f1": 0.5, "onset_f1": 0.4},
              "retrieval": {"frame_f1": 0.3, "onset_f1": 0.2}}
    (shelf / "index.json").write_text(json.dumps({"models": [
        {"name": "pop909-accompaniment", "file": "tiny.pt", "task": "melody2accomp",
         "steps_per_beat": 4, "window": 256, "description": "a tiny test model",
         "test_scores": scores}]}))
    monkeypatch.setattr(pretrained, "PRETRAINED", shelf)

    result = invoke("models")
    assert result.exit_code == 0, result.output
    header, row = result.output.splitlines()[:2]
    assert header.split()[:3] == ["name", "task", "grid"]
    assert row.split()[:2] == ["pop909-accompaniment", "melody2accomp"]
    assert "0.500" in row and "0.300 / 0.200" in row
    listed = json.loads(invoke("models", "--json").output)
    assert listed[0]["bytes"] == (shelf / "tiny.pt").stat().st_size

    # convert uses the default model when given neither --model nor --checkpoint.
    out = tmp_path / "out.mid"
    result = invoke("convert", str(song), "-o", str(out), "--device", "cpu", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["generated_notes"]["accompaniment"] > 0
    result = invoke("convert", str(song), "--model", "pop909-accompaniment", "-o", str(out),
                    "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert load_pretrained("pop909-accompaniment").meta.task == "melody2accomp"

    line = one_line_error(invoke("convert", str(song), "--model", "bach", "-o", str(out)))
    assert "no shipped model 'bach'" in line and "pop909-accompaniment" in line
    result = invoke("convert", str(song), "--model", "pop909-accompaniment", "--checkpoint",
                    str(run / "last.pt"), "-o", str(out))
    assert result.exit_code != 0 and "not both" in result.output
    (shelf / "tiny.pt").unlink()
    line = one_line_error(invoke("convert", str(song), "-o", str(out)))
    assert "not installed" in line


def _drums_and_chords(path: Path) -> Path:
    q = 480
    start = np.arange(0, 64) * q
    drums = Track("Drums", 0, True, Notes(start, start + q // 2, np.full(64, 36, np.uint8),
                                          np.full(64, 100, np.uint8)))
    chord_start = np.repeat(np.arange(16) * 4 * q, 4)
    chords = Track("Pad", 89, False, Notes(chord_start, chord_start + 4 * q,
                                           np.tile(np.array([48, 52, 55, 60], np.uint8), 16),
                                           np.full(64, 70, np.uint8)))
    write_midi(Score(q, [drums, chords], [TempoChange(0, 500_000)],
                     [TimeSignature(0, 4, 4)]), path)
    return path


def test_convert_errors_are_one_line(run, song, tmp_path):
    ckpt = str(run / "last.pt")
    out = str(tmp_path / "out.mid")
    text = tmp_path / "notes.mid"
    text.write_text("these are not notes\n")
    line = one_line_error(invoke("convert", str(text), "--checkpoint", ckpt, "-o", out))
    assert str(text) in line
    no_melody = _drums_and_chords(tmp_path / "pad.mid")
    line = one_line_error(invoke("convert", str(no_melody), "--checkpoint", ckpt, "-o", out))
    assert "no usable melody" in line and "--melody-track" in line
    line = one_line_error(invoke("convert", str(no_melody), "--checkpoint", ckpt, "-o", out,
                                 "--melody-track", "7"))
    assert "no track 7" in line
    drums = next(i for i, t in enumerate(read_midi(no_melody).tracks) if t.is_drum)
    line = one_line_error(invoke("convert", str(no_melody), "--checkpoint", ckpt, "-o", out,
                                 "--melody-track", str(drums)))
    assert "drum track" in line

    # A checkpoint whose task has other channels than its weights.
    band = edited_checkpoint(run, tmp_path, meta={
        "task": "melody2band", "target_shape": [10, 128, 256],
        "target_channels": ["drums", "piano", "guitar", "bass", "strings"]})
    line = one_line_error(invoke("convert", str(song), "--checkpoint", str(band), "-o", out))
    assert "weights do not fit" in line
    # Shapes that do not fit the task it names.
    shape = edited_checkpoint(run, tmp_path, meta={"source_shape": [4, 128, 256]})
    line = one_line_error(invoke("convert", str(song), "--checkpoint", str(shape), "-o", out))
    assert "do not fit task melody2accomp" in line
    unknown = edited_checkpoint(run, tmp_path, meta={"task": "drums2bass"})
    line = one_line_error(invoke("convert", str(song), "--checkpoint", str(unknown), "-o", out))
    assert "drums2bass" in line
    # A version2version checkpoint takes every pitched track: no --melody-track.
    v2v = edited_checkpoint(run, tmp_path, meta={
        "task": "version2version", "source_channels": ["version_a"],
        "target_channels": ["version_b"]})
    line = one_line_error(invoke("convert", str(song), "--checkpoint", str(v2v), "-o", out,
                                 "--melody-track", "0"))
    assert "version2version" in line
    line = one_line_error(invoke("convert", str(song), "--checkpoint", ckpt, "-o", out,
                                 "--hop", "300"))
    assert "hop 300 is not in 1..256" in line
    # Not a checkpoint at all.
    line = one_line_error(invoke("convert", str(song), "--checkpoint", str(song), "-o", out))
    assert "not a readable checkpoint" in line
    assert not Path(out).exists()


def test_quickstart_end_to_end(tmp_path):
    """build -> train -> evaluate -> convert on 10 chorales (one held out), on the CPU."""
    out = tmp_path / "qs"
    args = ("quickstart", "--out", str(out), "--limit", "10", "--steps", "30", "--ngf", "8",
            "--device", "cpu")
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    assert "frame F1" in result.output and "retrieval" in result.output
    assert "converted bach/bwv267 (held out)" in result.output
    chorale = out / "bach_bwv267.mid"
    converted = out / "bach_bwv267-converted.mid"
    given, got = read_midi(chorale), read_midi(converted)
    assert got.tempos == given.tempos and got.time_signatures == given.time_signatures
    soprano = next(t for t in given.tracks if t.name == "Soprano")
    kept = [t for t in got.tracks if t.name == "Soprano"]
    assert len(kept) == 1 and kept[0].notes.equals(soprano.notes)
    generated = next(t for t in got.tracks if t.name == "accompaniment")
    assert len(generated.notes) > 0
    assert {t.name for t in got.tracks} == {"Soprano", "accompaniment"}
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    assert set(metrics["systems"]) == {"run", "empty", "copy", "retrieval", "real"}
    assert (out / "eval" / "examples.png").is_file()
    assert (out / "bach_bwv267-converted.png").is_file()
    # The report, with players, opens in a real browser with everything loaded; the
    # converted chorale is also audio.
    report = out / "eval" / "report.html"
    assert f"report: {report}" in result.output
    assert f"audio: {out / 'bach_bwv267-converted.wav'}" in result.output
    state = open_page(report, tmp_path / "report.png")
    assert len(state["images"]) == 3 * 6 + 1  # 3 examples x 6 rolls, the curves
    assert all(complete and width > 0 for complete, width in state["images"])
    assert len(state["audio"]) == 3 * 6  # one under each roll
    assert all(ready >= 1 and not error for ready, error, _ in state["audio"])
    # The held-out chorale is in the test split, never in train.
    train_songs = {s for f in (out / "data" / "train").glob("*.parquet")
                   for s in pq.read_table(f, columns=["song_id"]).column("song_id").to_pylist()}
    assert "bach/bwv267" not in train_songs and len(train_songs) == 8

    # Run again: everything is reused, nothing trained twice.
    mtime = (out / "run" / "last.pt").stat().st_mtime_ns
    again = invoke(*args)
    assert again.exit_code == 0, again.output
    assert "built before" in again.output and "trained before" in again.output
    assert (out / "run" / "last.pt").stat().st_mtime_ns == mtime
    more = invoke(*args[:-5], "40", *args[-4:])  # --steps 40: trains further
    assert more.exit_code == 0, more.output
    assert "30 -> 40 steps" in more.output
    assert load_checkpoint(out / "run" / "last.pt")["step"] == 40
    shutil.rmtree(out / "eval")


def test_quickstart_plans_its_minutes_and_trains_further_with_more(tmp_path, monkeypatch):
    out = tmp_path / "qs"
    args = ("quickstart", "--out", str(out), "--limit", "10", "--ngf", "8", "--device", "cpu")
    first = invoke(*args, "--minutes", "0.5")
    assert first.exit_code == 0, first.output
    assert "plan: 0.5 min in all: build the dataset" in first.output
    assert "s a training step here" in first.output
    assert "are too few for the model to learn much" in first.output
    steps = load_checkpoint(out / "run" / "last.pt")["step"]
    state = json.loads((out / "quickstart.json").read_text())
    assert state["minutes"] == 0.5 and state["build_seconds"] > 0
    # With no SoundFont: everything else made, the report without players, then one
    # line saying what to install, and exit 1.
    monkeypatch.delenv(audio.ENV, raising=False)
    monkeypatch.setattr(audio, "SYSTEM_SOUNDFONTS", ("/nonexistent/GM.sf2",))
    second = invoke(*args, "--minutes", "0.8")
    assert second.exit_code == 1, second.output
    assert second.output.strip().splitlines()[-1] == f"Error: {audio.NO_SOUNDFONT}"
    assert "plan: 0.8 min in all: the dataset (built before)" in second.output
    assert f"({steps} done before)" in second.output
    assert load_checkpoint(out / "run" / "last.pt")["step"] > steps
    assert "<audio" not in (out / "eval" / "report.html").read_text()
    assert (out / "bach_bwv267-converted.mid").is_file()
