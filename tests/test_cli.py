"""The command line: ``musicpairs --version`` and ``musicpairs inspect midi``."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from musicpairs import __version__
from musicpairs.cli import main
from musicpairs.midi import PARSERS

from conftest import POP909_SONGS
from smf import simple_song


@pytest.fixture
def runner():
    return CliRunner()


def test_version(runner):
    result = runner.invoke(main, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


def test_inspect_midi_table(runner):
    result = runner.invoke(main, ["inspect", "midi", str(POP909_SONGS[0])])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "ticks per quarter 480" in lines[1] and "1164 steps" in lines[1]
    assert lines[2] == "tempo  90 qpm @ beat 0"
    assert lines[3] == "meter  2/4 @ beat 0"
    melody = next(line for line in lines if line.startswith("0  MELODY"))
    assert "melody (name)" in melody and "264" in melody
    assert any(line.startswith("2  PIANO") and "other" in line for line in lines)
    assert "melody p" in lines[5]  # the header: each track's melody probability


def test_inspect_midi_gives_each_track_its_melody_probability(runner):
    result = runner.invoke(main, ["inspect", "midi", str(POP909_SONGS[0]), "--json"])
    tracks = json.loads(result.output)["tracks"]
    probs = {t["name"]: t["melody_probability"] for t in tracks}
    assert sum(probs.values()) == pytest.approx(1.0, abs=0.01)  # rounded to 3 digits
    assert probs["MELODY"] == max(probs.values())


@pytest.mark.parametrize("parser", PARSERS)
def test_inspect_midi_json_is_the_same_for_every_parser(runner, parser):
    result = runner.invoke(main, ["inspect", "midi", str(POP909_SONGS[1]), "--json",
                                  "--parser", parser])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["parser"] == parser
    assert [t["name"] for t in summary["tracks"]] == ["MELODY", "BRIDGE", "PIANO"]
    assert [t["role"] for t in summary["tracks"]] == ["melody", "other", "other"]
    assert {t["lpd5"] for t in summary["tracks"]} == {"piano"}
    reference = json.loads(runner.invoke(main, ["inspect", "midi", str(POP909_SONGS[1]),
                                                "--json"]).output)
    reference["parser"] = parser
    assert summary == reference


def test_inspect_midi_steps_per_beat_and_env_prefix(runner):
    path = str(POP909_SONGS[0])
    result = runner.invoke(main, ["inspect", "midi", path, "--json", "--steps-per-beat", "12"])
    assert json.loads(result.output)["length"]["steps"] == 3491
    result = runner.invoke(main, ["inspect", "midi", path, "--json"],
                           env={"MUSICPAIRS_INSPECT_MIDI_PARSER": "miditoolkit"})
    assert json.loads(result.output)["parser"] == "miditoolkit"


@pytest.mark.parametrize("content", [b"", b"not midi at all" * 10, simple_song()[:30],
                                     simple_song(tpq=0)])
@pytest.mark.parametrize("parser", PARSERS)
def test_inspect_midi_bad_file_is_one_line_and_non_zero(runner, tmp_path, content, parser):
    path = tmp_path / "bad.mid"
    path.write_bytes(content)
    result = runner.invoke(main, ["inspect", "midi", str(path), "--parser", parser])
    assert result.exit_code == 1
    assert result.output.count("\n") == 1
    assert result.output.startswith(f"Error: {path}: ")
    assert "Traceback" not in result.output


def test_console_script_prints_no_traceback(tmp_path):
    path = tmp_path / "random.mid"
    path.write_bytes(bytes(range(256)) * 4)
    proc = subprocess.run([sys.executable, "-m", "musicpairs", "inspect", "midi", str(path)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.strip() == f"Error: {path}: not a MIDI file (no MThd header)"


def test_build_lists_tasks(runner):
    result = runner.invoke(main, ["build", "--list-tasks"])
    assert result.exit_code == 0
    assert [line.split()[0] for line in result.output.splitlines()] == [
        "melody2accomp", "melody2band", "version2version"]


def test_build_json_line_and_bad_path(runner, tmp_path):
    songs = tmp_path / "songs"
    songs.mkdir()
    (songs / "a.mid").write_bytes(simple_song())
    out = tmp_path / "out"
    result = runner.invoke(main, ["build", "--src", "folder", "--path", str(songs), "--out",
                                  str(out), "--workers", "1", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert set(summary) == {"files", "songs", "pairs", "splits", "rejected", "seconds", "out",
                            "dedup", "warnings"}
    assert summary["files"] == 1 and summary["rejected"] == 1  # 3 notes: no usable window
    result = runner.invoke(main, ["build", "--src", "pop909", "--path", str(tmp_path / "no"),
                                  "--out", str(tmp_path / "o2")])
    assert result.exit_code == 1
    assert result.output.startswith("Error: POP909 folder not found")
    assert "Traceback" not in result.output
    assert not (tmp_path / "o2").exists()
