"""``musicpairs inspect shard | dataset`` on the session's small dataset, and the exact
pair <-> MIDI codec behind ``--midi``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from musicpairs.cli import main
from musicpairs.config import RollSpec
from musicpairs.midi import Notes, Score, Track, read_midi, score_to_midi_bytes
from musicpairs.pairing import merge_tracks, pair_to_score, score_to_pair
from musicpairs.roll import midi_to_roll, planes_to_layers
from musicpairs.shards import ShardMeta, ShardReader


def shards(ds: Path) -> list[Path]:
    return sorted(ds.glob("*/part-*.parquet"))


def run(*args: str):
    return CliRunner().invoke(main, ["inspect", *map(str, args)])


def one_line_error(result) -> str:
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


# --- inspect shard ------------------------------------------------------------------------

def test_shard_summary_json_agrees_with_pyarrow(small_dataset):
    path = shards(small_dataset)[0]
    result = run("shard", path, "--json")
    assert result.exit_code == 0, result.output
    s = json.loads(result.output)
    table = pq.read_table(path)
    assert s["rows"] == table.num_rows
    assert s["row_groups"] == pq.ParquetFile(path).num_row_groups
    assert s["bytes"] == path.stat().st_size
    assert s["compression"] == "LZ4"  # the rolls' codec
    assert s["songs"] == len(set(table.column("song_id").to_pylist()))
    assert s["meta"]["task"] == "melody2accomp"
    assert s["meta"]["source_shape"] == [2, 128, 256]
    assert s["meta"]["source_channels"] == ["melody"]
    assert [r["pair_id"] for r in s["first_rows"]] == table.column("pair_id").to_pylist()[:5]
    assert s["confidence"]["min"] == s["confidence"]["max"] == 1.0
    assert sum(n for _, _, n in s["confidence"]["histogram"]) == s["rows"]
    # The generated melody is one note every other step: monophonic, 2 onsets per beat
    # (fewer in the last window of a song, which runs past its end).
    melody = s["source"]["melody"]
    assert melody["polyphony"] == 1.0
    assert 1.3 < melody["onsets_per_beat"] <= 2.0
    assert s["target"]["accompaniment"]["polyphony"] > 2  # triads over a bass line


def test_shard_summary_table(small_dataset):
    path = shards(small_dataset)[0]
    result = run("shard", path)
    assert result.exit_code == 0, result.output
    for text in ("task melody2accomp", "source uint8[2, 128, 256] (melody)", "LZ4",
                 "confidence", "accompaniment", "first rows:"):
        assert text in result.output


def test_render_png_shows_the_rolls(small_dataset, tmp_path):
    from PIL import Image

    path = shards(small_dataset)[0]
    png = tmp_path / "row.png"
    result = run("shard", path, "--row", 1, "--render", png)
    assert result.exit_code == 0, result.output
    assert f"wrote {png}" in result.output
    image = np.asarray(Image.open(png).convert("RGB")).astype(int)
    height, width, _ = image.shape
    assert width >= 800 and height >= 300

    def colored(img):  # notes are drawn in colour; lines and text are grey
        return int((np.ptp(img, axis=2) > 60).sum())

    # The same picture with the rolls silenced has no colour: the colour is the notes.
    meta, row = ShardReader(path).meta, next(ShardReader(path).rows())
    from musicpairs.inspect import render_pair

    silent = {**row, "source": np.zeros_like(row["source"]),
              "target": np.zeros_like(row["target"])}
    blank = np.asarray(Image.open(render_pair(meta, silent, tmp_path / "blank.png"))
                       .convert("RGB")).astype(int)
    assert colored(blank) == 0
    assert colored(image) > 2000


def test_ascii_roll(small_dataset):
    path = shards(small_dataset)[0]
    result = run("shard", path, "--ascii")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "source: melody" in out and "target: accompaniment" in out
    # A pair does not carry its meter: the rulings say what they are, never "bar".
    assert ("(2 steps per character; | every 4 beats from the first downbeat, . a beat)"
            in out) and "bar" not in out.splitlines()[0]
    roll_lines = [x for x in out.splitlines() if x[:5].strip()[:1] in "ABCDEFG" and
                  x[:5].strip()[-1:].isdigit()]
    assert roll_lines and all(len(x) <= 5 + 128 for x in roll_lines)
    assert any("o" in x for x in roll_lines) and any("=" in x for x in roll_lines)
    narrow = run("shard", path, "--ascii", "--width", 64)
    assert "(4 steps per character;" in narrow.output


def test_midi_output_decodes_to_the_rows_rolls(small_dataset, tmp_path):
    for path in shards(small_dataset)[:3]:
        reader = ShardReader(path)
        for i, row in enumerate(reader.rows()):
            out = tmp_path / f"{path.parent.name}-{path.stem}-{i}.mid"
            result = run("shard", path, "--row", i, "--midi", out)
            assert result.exit_code == 0, result.output
            score = read_midi(out)
            names = [t.name for t in score.tracks]
            assert "source: melody" in names and "target: accompaniment" in names
            source, target = score_to_pair(score, reader.meta)
            np.testing.assert_array_equal(source, row["source"])
            np.testing.assert_array_equal(target, row["target"])


def test_pair_id_selects_the_same_row_as_its_index(small_dataset):
    path = shards(small_dataset)[-1]
    ids = pq.read_table(path, columns=["pair_id"]).column("pair_id").to_pylist()
    by_row = json.loads(run("shard", path, "--row", len(ids) - 1, "--ascii", "--json").output)
    by_id = json.loads(run("shard", path, "--pair-id", ids[-1], "--ascii", "--json").output)
    assert by_row == by_id and by_id["pair_id"] == ids[-1]


# --- the codec behind --midi: windows no single track can hold ------------------------------

META = ShardMeta("melody2accomp", 4, (2, 128, 16), (2, 128, 16), ("melody",),
                 ("accompaniment",))


def roundtrip(source: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    score = read_midi(score_to_midi_bytes(pair_to_score(META, source, target)))
    return score_to_pair(score, META)


def test_codec_keeps_held_notes_and_merged_overlaps():
    t = np.zeros((2, 128, 16), np.uint8)
    t[1, 60, 0:6], t[1, 60, 6:10] = 80, 50  # sounding from before the window, then softer
    t[0, 60, 3] = 50  # ... under which another track starts the same pitch softly
    t[1, 62, 2:12], t[1, 62, 5:9] = 70, 90  # a loud note inside a soft one, same pitch
    t[0, 62, 2], t[0, 62, 5] = 70, 90
    t[1, 65, 8:12], t[0, 65, 8], t[0, 65, 11] = 80, 80, 50  # a short soft note at a loud end
    s = np.zeros((2, 128, 16), np.uint8)
    s[1, 72, 0:3] = 64  # the melody holds a note into the window
    source, target = roundtrip(s, t)
    np.testing.assert_array_equal(source, s)
    np.testing.assert_array_equal(target, t)
    assert len(planes_to_layers(t)) == 2


def test_codec_refuses_planes_no_notes_make():
    bad = np.zeros((2, 128, 8), np.uint8)
    bad[0, 60, 2], bad[1, 60, 2] = 90, 40  # an onset louder than its own frame
    with pytest.raises(ValueError, match="louder than its frame"):
        planes_to_layers(bad)


note = st.tuples(st.integers(0, 3), st.integers(-8, 30), st.integers(1, 12),
                 st.integers(58, 63), st.integers(1, 127))


@settings(max_examples=150, deadline=None)
@given(st.lists(note, min_size=1, max_size=40), st.integers(0, 12))
def test_codec_is_exact_on_any_window_of_merged_tracks(notes, cut):
    """Tracks with overlapping same-pitch notes, merged and cut at any step, come back."""
    tracks = []
    for k in range(4):
        mine = [n for n in notes if n[0] == k]
        if mine:
            start = np.array([(n[1] + 8) * 120 for n in mine], np.int64)
            tracks.append(Track(f"t{k}", 0, False, Notes(
                start, start + np.array([n[2] * 120 for n in mine], np.int64),
                np.array([n[3] for n in mine], np.uint8),
                np.array([n[4] for n in mine], np.uint8))))
    roll = midi_to_roll(Score(480, tracks), RollSpec())
    merged = merge_tracks(roll, list(range(len(roll.tracks))))
    window = np.zeros((2, 128, 16), np.uint8)
    piece = merged[..., cut : cut + 16]
    window[..., : piece.shape[-1]] = piece
    source, target = roundtrip(window, window)
    np.testing.assert_array_equal(source, window)
    np.testing.assert_array_equal(target, window)


# --- inspect dataset ------------------------------------------------------------------------

def test_dataset_summary(small_dataset):
    result = run("dataset", small_dataset, "--json")
    assert result.exit_code == 0, result.output
    s = json.loads(result.output)
    manifest = json.loads((small_dataset / "manifest.json").read_text())
    assert sum(x["rows"] for x in s["splits"].values()) == manifest["counts"]["pairs"]
    assert sum(x["songs"] for x in s["splits"].values()) == 12
    assert sum(x["bytes"] for x in s["splits"].values()) == sum(
        x["bytes"] for x in manifest["shards"])
    groups = {g["kind"]: g for g in s["rejects"]["groups"]}
    assert s["rejects"]["total"] == 2
    assert groups["empty file"]["count"] == 1
    assert groups["empty file"]["examples"][0]["file"].endswith("empty.mid")
    assert s["config"]["task"] == "melody2accomp"
    assert s["melody_by"] == {"name": 12}  # every generated song names its melody
    text = run("dataset", small_dataset)
    assert text.exit_code == 0
    for word in ("train", "valid", "test", "rejects (2):", "empty file", "e.g.", "config:",
                 "melody found: 12 by name"):
        assert word in text.output


def test_verify_passes_then_catches_one_flipped_byte(small_dataset, tmp_path):
    import shutil

    copy = tmp_path / "ds"
    shutil.copytree(small_dataset, copy)
    ok = run("dataset", copy, "--verify")
    assert ok.exit_code == 0, ok.output
    assert "verify: all" in ok.output
    victim = shards(copy)[2]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))
    bad = run("dataset", copy, "--verify")
    assert bad.exit_code == 1
    rel = victim.relative_to(copy).as_posix()
    assert f"MISMATCH {rel}: sha256" in bad.output
    assert bad.output.count("MISMATCH") == 1
    as_json = json.loads(run("dataset", copy, "--verify", "--json").output)
    assert as_json["verify"]["ok"] is False and rel in as_json["verify"]["problems"][0]


# --- bad input: one line, non-zero exit, no traceback ----------------------------------------

def test_bad_inputs_say_what_is_wrong_in_one_line(small_dataset, tmp_path):
    text = tmp_path / "notes.parquet"
    text.write_text("not parquet at all")
    assert "not a readable Parquet file" in one_line_error(run("shard", text))

    plain = tmp_path / "plain.parquet"
    pq.write_table(pa.table({"x": [1, 2, 3]}), plain)
    assert "not a musicpairs shard" in one_line_error(run("shard", plain))

    good = shards(small_dataset)[0]
    truncated = tmp_path / "truncated.parquet"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    assert str(truncated) in one_line_error(run("shard", truncated))

    rows = pq.ParquetFile(good).metadata.num_rows
    line = one_line_error(run("shard", good, "--row", rows, "--ascii"))
    assert f"row {rows} is out of range" in line
    assert "no row has pair_id" in one_line_error(run("shard", good, "--pair-id", "nope",
                                                      "--ascii"))
    assert "no such file" in one_line_error(run("shard", tmp_path / "missing.parquet"))

    (tmp_path / "empty-dir").mkdir()
    assert "no manifest.json" in one_line_error(run("dataset", tmp_path / "empty-dir"))
    half = tmp_path / "half"
    half.mkdir()
    (half / "config.json").write_text("{}")
    assert "--resume" in one_line_error(run("dataset", half))
