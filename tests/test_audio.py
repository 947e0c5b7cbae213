"""Audio and the HTML report: synthesized lengths and loudness, the one-line error with
no SoundFont (every other output still written), and the report opened in a real
headless Chromium with every image and audio element loaded.

These need what ``.ci/run`` installs: a General MIDI SoundFont (Debian's
``fluid-soundfont-gm``), ``chromium`` and ``chromium-driver``, and selenium.
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from musicpairs import audio
from musicpairs.cli import main
from musicpairs.midi import read_midi

from browser import open_page
from conftest import synth_song

TINY = ["--ngf", "4", "--ndf", "4", "--batch-size", "2", "--device", "cpu",
        "--num-workers", "0"]


def invoke(*args: str):
    return CliRunner().invoke(main, list(args))


@pytest.fixture(scope="module")
def run(small_dataset, tmp_path_factory) -> Path:
    """A 4-step run on the small dataset (decoding tuned at its end), with samples."""
    out = tmp_path_factory.mktemp("audio") / "run"
    result = invoke("train", "--data", str(small_dataset), "--out", str(out), "--steps", "4",
                    "--eval-every", "4", "--sample-count", "1", "--log-every", "1", *TINY)
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture
def no_soundfont(monkeypatch):
    monkeypatch.delenv(audio.ENV, raising=False)
    monkeypatch.setattr(audio, "SYSTEM_SOUNDFONTS", ("/nonexistent/GM.sf2",))


def wav_samples(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path)) as f:
        assert f.getnchannels() == 1 and f.getsampwidth() == 2
        data = np.frombuffer(f.readframes(f.getnframes()), "<i2").astype(np.float32) / 32767
        return data, f.getframerate()


def test_a_soundfont_is_installed():
    """The rest of this file needs one; this says which is missing and how to get it."""
    assert audio.find_soundfont().is_file()


def test_convert_writes_audio_as_long_as_the_midi_and_loud_where_notes_sound(run, tmp_path):
    song = tmp_path / "song.mid"
    song.write_bytes(synth_song(7, bars=12))
    out, wav = tmp_path / "out.mid", tmp_path / "out.wav"
    result = invoke("convert", str(song), "--checkpoint", str(run / "generator.pt"), "-o",
                    str(out), "--audio", str(wav), "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert f"audio: {wav}" in result.output
    samples, rate = wav_samples(wav)
    from symusic import Score

    timed = Score(str(out)).to("second")
    assert len(read_midi(out).tracks) == 2  # the melody and the generated accompaniment
    assert abs(len(samples) / rate - timed.end()) <= 1.0
    # Loud where notes sound: every half second from the first note to the last.
    half = rate // 2
    frames = samples[int(timed.start() * rate) : int(timed.end() * rate)]
    rms = np.sqrt(np.mean(frames[: len(frames) // half * half].reshape(-1, half) ** 2, axis=1))
    assert len(rms) > 4 and (rms > 1e-3).all(), rms
    assert np.abs(samples).max() == pytest.approx(audio.PEAK, abs=1e-3)


def test_training_samples_come_with_audio(run):
    wavs = list((run / "samples").rglob("*.wav"))
    assert wavs and all(wav_samples(w)[0].size for w in wavs)


def test_no_soundfont_is_one_line_exit_1_and_the_rest_is_written(run, tmp_path,
                                                                  no_soundfont):
    song = tmp_path / "song.mid"
    song.write_bytes(synth_song(3, bars=8))
    out, png, wav = tmp_path / "out.mid", tmp_path / "out.png", tmp_path / "out.wav"
    result = invoke("convert", str(song), "--checkpoint", str(run / "generator.pt"), "-o",
                    str(out), "--render", str(png), "--audio", str(wav), "--device", "cpu")
    assert result.exit_code == 1
    last = result.output.strip().splitlines()[-1]
    assert last == f"Error: {audio.NO_SOUNDFONT}"
    assert "apt install fluid-soundfont-gm" in last and "--soundfont" in last
    assert out.is_file() and png.is_file() and not wav.exists()
    # inspect shard --audio: the same, with its MIDI written.
    shard = next(Path(read_config_data(run)).glob("train/*.parquet"))
    midi = tmp_path / "row.mid"
    result = invoke("inspect", "shard", str(shard), "--midi", str(midi), "--audio",
                    str(tmp_path / "row.wav"))
    assert result.exit_code == 1 and result.output.strip().endswith(audio.NO_SOUNDFONT)
    assert midi.is_file()
    # evaluate --report: the page and the scores, without players.
    out = tmp_path / "eval"
    result = invoke("evaluate", "--checkpoint", str(run / "generator.pt"), "--data",
                    read_config_data(run), "--out", str(out), "--report", "--examples", "1",
                    "--baselines", "copy", "--device", "cpu")
    assert result.exit_code == 1 and result.output.strip().endswith(audio.NO_SOUNDFONT)
    page = (out / "report.html").read_text()
    assert "<img" in page and "<audio" not in page and "No audio" in page
    assert (out / "metrics.json").is_file()


def read_config_data(run: Path) -> str:
    import json

    return json.loads((run / "config.json").read_text())["data"]


def test_inspect_shard_writes_a_row_as_audio(run, tmp_path):
    shard = next(Path(read_config_data(run)).glob("train/*.parquet"))
    wav = tmp_path / "row.wav"
    result = invoke("inspect", "shard", str(shard), "--row", "1", "--audio", str(wav))
    assert result.exit_code == 0, result.output
    samples, _ = wav_samples(wav)
    assert np.abs(samples).max() > 0.5


def test_audio_formats_and_soundfont_errors(tmp_path, monkeypatch):
    midi = synth_song(1, bars=2)
    with pytest.raises(audio.AudioError, match=r"\.wav \(or \.flac\), not \.mp3"):
        audio.write_audio(midi, tmp_path / "x.mp3")
    with pytest.raises(audio.AudioError, match="no such SoundFont"):
        audio.write_audio(midi, tmp_path / "x.wav", soundfont=tmp_path / "none.sf2")
    monkeypatch.setenv(audio.ENV, str(tmp_path / "missing.sf2"))
    with pytest.raises(audio.AudioError, match=audio.ENV):
        audio.find_soundfont()


def test_report_opens_in_headless_chromium_with_every_image_and_audio_loaded(
        run, tmp_path):
    out = tmp_path / "eval"
    result = invoke("evaluate", "--checkpoint", str(run / "generator.pt"), "--data",
                    read_config_data(run), "--out", str(out), "--report", "--examples", "2",
                    "--device", "cpu")
    assert result.exit_code == 0, result.output
    page = out / "report.html"
    text = page.read_text()
    # 2 examples x (source, real, run, empty, copy, retrieval) rolls, each with a player,
    # and the curves.
    assert text.count("<img") == 2 * 6 + 1 and text.count("<audio") == 2 * 6

    shot = tmp_path / "report.png"
    state = open_page(page, shot)
    assert len(state["images"]) == 13 and all(c and w > 0 for c, w in state["images"])
    assert len(state["audio"]) == 12
    assert all(r >= 1 and e == 0 and d > 1 for r, e, d in state["audio"]), state["audio"]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
