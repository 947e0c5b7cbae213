"""build.py and the corpora: real Dask, real Parquet, real MIDI files."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from musicpairs.build import BuildConfig, BuildError, build, split_of
from musicpairs.midi import Notes, Score, Track, score_to_midi_bytes
from musicpairs.shards import ShardReader

from conftest import POP909_SONGS, POP909_VERSION, synth_song
from smf import simple_song


def rows_by_id(out: Path) -> dict[str, dict]:
    """Every row of every shard of a dataset, keyed by pair_id, rolls as bytes."""
    rows = {}
    for path in sorted(out.glob("*/part-*.parquet")):
        for r in pq.read_table(path).to_pylist():
            assert r["pair_id"] not in rows
            rows[r["pair_id"]] = r
    return rows


def rejects(out: Path) -> list[dict]:
    return pq.read_table(out / "rejects.parquet").to_pylist()


# --- Bach, with nothing downloaded, on a real two-worker LocalCluster --------------------

@pytest.fixture(scope="session")
def bach_dataset(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("bach") / "ds"
    summary = build(BuildConfig(src="bach", task="melody2accomp", out=str(out), workers=2,
                                songs_per_shard=48))
    return out, summary


def test_bach_build_opens_with_plain_pyarrow(bach_dataset):
    out, summary = bach_dataset
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["pairs"] == summary["pairs"] > 500
    for shard in manifest["shards"]:
        path = out / shard["path"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == shard["sha256"]
        f = pq.ParquetFile(path)
        meta = json.loads(f.schema_arrow.metadata[b"musicpairs"])
        assert meta["task"] == "melody2accomp" and meta["dtype"] == "uint8"
        table = f.read()
        assert table.num_rows == shard["rows"]
        src = np.frombuffer(table.column("source")[0].as_py(), np.uint8)
        tgt = np.frombuffer(table.column("target")[0].as_py(), np.uint8)
        src = src.reshape(meta["source_shape"])
        tgt = tgt.reshape(meta["target_shape"])
        assert src.shape == (2, 128, 256) and tgt.shape == (2, 128, 256)
        assert src[0].any() and tgt[0].any()
        assert set(table.column("split").to_pylist()) == {shard["split"]}


def test_bach_build_pairs_at_least_95_percent_of_chorales(bach_dataset):
    out, summary = bach_dataset
    songs_with_pairs = {r["song_id"] for r in rows_by_id(out).values()}
    assert summary["songs"] >= 340
    assert len(songs_with_pairs) >= 0.95 * summary["songs"]
    # Every chorale without pairs says why.
    missing = {s for s in {r["song_id"] for r in rejects(out)}} | songs_with_pairs
    assert len(missing) == summary["songs"]


def test_splits_are_by_song_and_never_mix(bach_dataset):
    out, _ = bach_dataset
    rows = rows_by_id(out).values()
    for r in rows:
        assert r["split"] == split_of(r["song_id"])
    by_split = {s: {r["song_id"] for r in rows if r["split"] == s} for s in ("train", "test")}
    assert by_split["train"] and by_split["test"]
    assert not by_split["train"] & by_split["test"]


# --- POP909 layout ------------------------------------------------------------------------

@pytest.fixture
def pop909_tree(tmp_path) -> Path:
    """The committed POP909 files in POP909's layout, with one planted wrong version:
    song 001 filed as a version of song 003."""
    root = tmp_path / "pop909"
    for f in POP909_SONGS:
        (root / f.stem).mkdir(parents=True)
        shutil.copy(f, root / f.stem / f.name)
    (root / "002" / "versions").mkdir()
    shutil.copy(POP909_VERSION, root / "002" / "versions" / POP909_VERSION.name)
    (root / "003" / "versions").mkdir()
    shutil.copy(POP909_SONGS[0], root / "003" / "versions" / "003-v9.mid")
    return root


def test_pop909_melody2accomp(pop909_tree, tmp_path):
    out = tmp_path / "m2a"
    summary = build(BuildConfig(src="pop909", path=str(pop909_tree), task="melody2accomp",
                                out=str(out), workers=1))
    rows = rows_by_id(out)
    assert summary["files"] == 5 and summary["pairs"] == len(rows) > 20
    assert {r["source_file"] for r in rows.values()} == {
        "001/001.mid", "002/002.mid", "003/003.mid", "002/versions/002-v2.mid",
        "003/versions/003-v9.mid"}


def test_pop909_version2version_rejects_a_planted_different_song(pop909_tree, tmp_path):
    out = tmp_path / "v2v"
    build(BuildConfig(src="pop909", path=str(pop909_tree), task="version2version",
                      out=str(out), workers=1))
    rows = rows_by_id(out)
    assert {(r["source_file"], r["target_file"]) for r in rows.values()} == {
        ("002/002.mid", "002/versions/002-v2.mid")}
    assert all(r["confidence"] >= 0.5 for r in rows.values())
    planted = [r for r in rejects(out) if r["file"].endswith("003-v9.mid")]
    assert len(planted) == 1 and planted[0]["stage"] == "align"
    confidence = float(planted[0]["reason"].split()[2])
    assert confidence < 0.5
    lonely = [r for r in rejects(out) if r["song_id"] == "001"]
    assert lonely[0]["reason"] == "no other readable version of this song"


# --- Lakh, as folders and as archives -----------------------------------------------------

def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()  # noqa: S324 - Lakh names files by MD5


@pytest.fixture
def lakh_trees(tmp_path) -> tuple[Path, Path, dict]:
    """The same small Lakh corpus twice: as folders, and as release archives."""
    songs = {i: synth_song(i, bars=12) for i in range(8)}
    md5 = {i: _md5(d) for i, d in songs.items()}
    files = {
        # Two files of one MSD id; song 0 also sits under a second id with a lower score.
        f"lmd_matched/A/B/C/TRABC000000000001/{md5[0]}.mid": songs[0],
        f"lmd_matched/A/B/C/TRABC000000000001/{md5[1]}.mid": songs[1],
        f"lmd_matched/X/Y/Z/TRXYZ000000000002/{md5[0]}.mid": songs[0],
        f"lmd_matched/X/Y/Z/TRXYZ000000000002/{md5[2]}.mid": songs[2],
        # Aligned copy of a matched file: same md5 name, used once.
        f"lmd_aligned/A/B/C/TRABC000000000001/{md5[1]}.mid": songs[1],
        "clean_midi/Some Artist/A Title.mid": songs[3],
        "clean_midi/Some Artist/A Title.1.mid": songs[4],
        "clean_midi/Other/B Title.mid": songs[5],
        f"lmd_full/{md5[5][0]}/{md5[5]}.mid": songs[5],  # same bytes as clean_midi's B Title
        f"lmd_full/{md5[6][0]}/{md5[6]}.mid": songs[6],
        f"lmd_full/{md5[7][0]}/{md5[7]}.mid": songs[7],
    }
    scores = {"TRABC000000000001": {md5[0]: 0.9, md5[1]: 0.8},
              "TRXYZ000000000002": {md5[0]: 0.4, md5[2]: 0.7}}
    folders, archives = tmp_path / "lakh_dirs", tmp_path / "lakh_tars"
    for rel, data in files.items():
        (folders / rel).parent.mkdir(parents=True, exist_ok=True)
        (folders / rel).write_bytes(data)
    archives.mkdir()
    for root in (folders, archives):
        (root / "match_scores.json").write_text(json.dumps(scores))
    for layout in ("lmd_matched", "lmd_aligned", "clean_midi", "lmd_full"):
        with tarfile.open(archives / f"{layout}.tar.gz", "w:gz") as tar:
            tar.add(folders / layout, arcname=layout)
            if layout == "lmd_full":
                evil = tarfile.TarInfo("../x.mid")
                evil.size = len(songs[6])
                tar.addfile(evil, io.BytesIO(songs[6]))
    return folders, archives, md5


def _build_rows(root: Path, out: Path) -> tuple[dict, dict, list]:
    summary = build(BuildConfig(src="lakh", path=str(root), task="melody2accomp",
                                out=str(out), workers=1, songs_per_shard=3))
    return summary, rows_by_id(out), rejects(out)


def test_lakh_folders_and_archives_give_the_same_rows(lakh_trees, tmp_path):
    folders, archives, md5 = lakh_trees
    s1, rows1, rej1 = _build_rows(folders, tmp_path / "a")
    s2, rows2, rej2 = _build_rows(archives, tmp_path / "b")
    assert rows1 == rows2 and len(rows1) > 0
    assert s1["songs"] == s2["songs"] == 6
    song_ids = {r["song_id"] for r in rows1.values()}
    assert song_ids == {"TRABC000000000001", "TRXYZ000000000002", "Some Artist/A Title",
                        md5[6], md5[7]} | ({"Other/B Title"})
    # Songs group versions: one MSD id holds two files, one clean_midi title two versions.
    files_of = {}
    for r in rows1.values():
        files_of.setdefault(r["song_id"], set()).add(r["source_file"])
    assert len(files_of["TRABC000000000001"]) == 2
    assert files_of["Some Artist/A Title"] == {"clean_midi/Some Artist/A Title.mid",
                                               "clean_midi/Some Artist/A Title.1.mid"}
    # Song 0's file goes to the MSD id with the better score, once.
    assert files_of["TRXYZ000000000002"] == {f"lmd_matched/X/Y/Z/TRXYZ000000000002/{md5[2]}.mid"}
    for found in (rej1, rej2):
        reasons = [r["reason"] for r in found]
        assert sum(f"md5 {md5[0]} is used by TRABC000000000001" in x for x in reasons) == 1
        assert sum(f"md5 {md5[1]} is used by TRABC000000000001" in x for x in reasons) == 1
        assert sum(f"md5 {md5[5]} is used by Other/B Title" in x for x in reasons) == 1
    escaped = [r for r in rej2 if r["file"].endswith("::../x.mid")]
    assert len(escaped) == 1 and "escapes" in escaped[0]["reason"]
    assert not (tmp_path / "x.mid").exists() and not (archives.parent / "x.mid").exists()


# --- bad files among good ones -------------------------------------------------------------

def _pathological(n_notes: int) -> bytes:
    start = np.arange(n_notes, dtype=np.int64) * 10
    notes = Notes(start, start + 5, np.full(n_notes, 60, np.uint8), np.full(n_notes, 64,
                                                                              np.uint8))
    return score_to_midi_bytes(Score(480, [Track("Melody", 0, False, notes)]))


def test_bad_files_go_to_rejects_and_good_ones_are_all_paired(tmp_path):
    corpus = tmp_path / "mixed"
    corpus.mkdir()
    good = {f"good{i}.mid": synth_song(10 + i) for i in range(4)}
    good_song = simple_song()
    bad = {
        "empty.mid": b"",
        "random.mid": np.random.default_rng(0).integers(0, 256, 5000, np.uint8).tobytes(),
        "truncated.mid": synth_song(99)[:300],
        "notes.mid": b"these are my notes, not a MIDI file\n" * 40,
        "zero_ppq.mid": good_song[:12] + b"\x00\x00" + good_song[14:],
        "million.mid": _pathological(1_100_000),
        "far.mid": score_to_midi_bytes(Score(480, [Track("x", 0, False, Notes(
            np.array([0, 480 * 200_000]), np.array([480, 480 * 200_001]),
            np.array([60, 62], np.uint8), np.array([80, 80], np.uint8)))])),
    }
    for name, data in {**good, **bad}.items():
        (corpus / name).write_bytes(data)
    out = tmp_path / "out"
    summary = build(BuildConfig(src="folder", path=str(corpus), task="melody2accomp",
                                out=str(out), workers=2, songs_per_shard=2))
    assert summary["files"] == len(good) + len(bad)
    found = {Path(r["file"]).name: r for r in rejects(out)}
    assert set(found) == set(bad)
    assert "empty" in found["empty.mid"]["reason"]
    assert "0 ticks per quarter" in found["zero_ppq.mid"]["reason"]
    assert "1100000 notes, over the limit" in found["million.mid"]["reason"]
    assert "steps long, over the limit" in found["far.mid"]["reason"]
    assert all(r["stage"] == "read" for r in found.values())
    paired = {r["source_file"] for r in rows_by_id(out).values()}
    assert paired == set(good)


def test_folder_corpus_reads_an_fsspec_url():
    import fsspec

    from musicpairs.datasets.folder import FolderCorpus

    fs = fsspec.filesystem("memory")
    fs.pipe("/mp-corpus/a/one.mid", simple_song())
    fs.pipe("/mp-corpus/b/two.mid", simple_song())
    fs.pipe("/mp-corpus/b/notes.txt", b"not midi")
    try:
        songs = list(FolderCorpus("memory://mp-corpus").songs())
        assert [(s.song_id, [v.name for v in s.versions]) for s in songs] == [
            ("one", ["a/one.mid"]), ("two", ["b/two.mid"])]
        assert songs[0].versions[0].read_bytes() == simple_song()
        grouped = list(FolderCorpus("memory://mp-corpus", group_by="parent").songs())
        assert [s.song_id for s in grouped] == ["a", "b"]
    finally:
        fs.rm("/mp-corpus", recursive=True)


# --- determinism, resume ------------------------------------------------------------------

@pytest.fixture
def folder_corpus(tmp_path) -> Path:
    root = tmp_path / "songs"
    root.mkdir()
    for i in range(10):
        (root / f"song{i:02d}.mid").write_bytes(synth_song(i, bars=16))
    return root


def _shard_bytes(out: Path) -> dict[str, str]:
    return {p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out.glob("*/part-*.parquet"))}


def test_same_config_twice_gives_identical_files(folder_corpus, tmp_path):
    for name in ("one", "two"):
        build(BuildConfig(src="folder", path=str(folder_corpus), task="melody2band",
                          out=str(tmp_path / name), workers=1, songs_per_shard=4))
    assert _shard_bytes(tmp_path / "one") == _shard_bytes(tmp_path / "two") != {}
    meta = ShardReader(next((tmp_path / "one").glob("train/*.parquet"))).meta
    assert meta.target_shape == (10, 128, 256)
    assert meta.target_channels == ("drums", "piano", "guitar", "bass", "strings")


def test_sigkill_then_resume_matches_an_uninterrupted_build(folder_corpus, tmp_path):
    args = ["--src", "folder", "--path", str(folder_corpus), "--task", "melody2accomp",
            "--workers", "1", "--songs-per-shard", "1"]
    reference = tmp_path / "reference"
    build(BuildConfig(src="folder", path=str(folder_corpus), task="melody2accomp",
                      out=str(reference), workers=1, songs_per_shard=1))

    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "musicpairs", "build", *args, "--out",
                             str(out)], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while len(list((out / "_build").glob("part-*.json"))) < 3:
        assert time.monotonic() < deadline, "the build made no progress"
        assert proc.poll() is None, "the build finished before it could be killed"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "manifest.json").exists()
    for path in out.glob("*/part-*.parquet"):  # whatever sits under a final name is whole
        assert ShardReader(path).num_rows > 0

    result = subprocess.run([sys.executable, "-m", "musicpairs", "build", *args, "--out",
                             str(out), "--resume", "--json"], capture_output=True, text=True,
                            check=True)
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["songs"] == 10
    assert _shard_bytes(out) == _shard_bytes(reference)
    assert rows_by_id(out).keys() == rows_by_id(reference).keys()
    assert [p for p in out.rglob("*") if ".tmp-" in p.name] == []


def test_resume_refuses_other_options_and_fresh_build_refuses_a_used_folder(folder_corpus,
                                                                            tmp_path):
    out = tmp_path / "ds"
    cfg = dict(src="folder", path=str(folder_corpus), task="melody2accomp", out=str(out),
               workers=1, limit=2)
    build(BuildConfig(**cfg))
    with pytest.raises(BuildError, match="not empty"):
        build(BuildConfig(**cfg))
    with pytest.raises(BuildError, match="window"):
        build(BuildConfig(**{**cfg, "window": 128}), resume=True)
    again = build(BuildConfig(**cfg), resume=True)
    assert again["songs"] == 2


def _band(lines: int, names=("", "", "", "")) -> bytes:
    """A tune (doubled note for note by a second track when lines == 2), chords and a bass
    line, 16 bars at 480 ticks per quarter."""
    rng = np.random.default_rng(7)
    start = np.arange(64) * 480
    tune = 60 + np.cumsum(rng.integers(-2, 3, 64)) % 12

    def track(name, program, s, d, p, v):
        return Track(name, program, False, Notes(s.astype(np.int64), (s + d).astype(np.int64),
                                                 np.asarray(p, np.uint8),
                                                 np.full(len(s), v, np.uint8)))

    chords = np.repeat(np.arange(16) * 1920, 3)
    tracks = [track(names[0], 73, start, 400, tune, 100)]
    if lines == 2:
        tracks.append(track(names[1], 74, start, 400, tune, 100))
    tracks += [track(names[2], 0, chords, 1800, 48 + np.tile([0, 4, 7], 16), 70),
               track(names[3], 33, np.arange(32) * 960, 900, 36 + np.arange(32) % 5, 90)]
    return score_to_midi_bytes(Score(480, tracks))


def test_an_abstention_is_a_reject_with_its_reason(tmp_path):
    corpus = tmp_path / "songs"
    corpus.mkdir()
    # No names: content decides. A tune doubled note for note by a second instrument
    # gives the classifier two equal tracks (confidence 0.5); a single tune is certain.
    (corpus / "doubled.mid").write_bytes(_band(2))
    (corpus / "single.mid").write_bytes(_band(1))
    (corpus / "named.mid").write_bytes(_band(2, names=("Vocal", "Flute", "Piano", "Bass")))
    out = tmp_path / "out"
    build(BuildConfig(src="folder", path=str(corpus), task="melody2accomp", out=str(out),
                      workers=1))
    found = {Path(r["file"]).name: r for r in rejects(out)}
    assert set(found) == {"doubled.mid"}
    assert found["doubled.mid"]["stage"] == "pair"
    assert found["doubled.mid"]["reason"].startswith("no confident melody: confidence 0.50")
    assert {r["source_file"] for r in rows_by_id(out).values()} == {"single.mid", "named.mid"}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["melody_by"] == {"content": 1, "name": 1, "no confident melody": 1}

    # --melody-confidence 0 takes the best candidate whatever.
    out0 = tmp_path / "out0"
    build(BuildConfig(src="folder", path=str(corpus), task="melody2accomp", out=str(out0),
                      workers=1, melody_confidence=0.0))
    assert not (out0 / "rejects.parquet").is_file() or not rejects(out0)
    assert json.loads((out0 / "manifest.json").read_text())["melody_by"] == {
        "content": 2, "name": 1}


def test_overwrite_replaces_only_a_build_and_warnings_name_empty_splits_and_channels(
        folder_corpus, tmp_path):
    out = tmp_path / "ds"
    cfg = BuildConfig(src="folder", path=str(folder_corpus), task="melody2band",
                      out=str(out), workers=1, limit=2)
    summary = build(cfg)
    warnings = summary["warnings"]
    assert any(w.startswith("split ") and "is empty" in w for w in warnings)
    # synth songs have no drums, guitar or strings: those channels are always silent
    for name in ("drums", "guitar", "strings"):
        assert f"target channel {name} is silent in 100 % of pairs: the model learns " \
               "little there" in warnings
    assert not any("channel piano" in w or "channel bass" in w for w in warnings)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["warnings"] == warnings
    with pytest.raises(BuildError, match="--overwrite replaces it"):
        build(cfg)
    assert build(cfg, overwrite=True)["pairs"] == summary["pairs"]
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(BuildError, match="not a musicpairs build"):
        build(dataclasses.replace(cfg, out=str(other)), overwrite=True)
    with pytest.raises(BuildError, match="nothing to resume: not a musicpairs build"):
        build(dataclasses.replace(cfg, out=str(other)), resume=True)
    assert (other / "notes.txt").read_text() == "keep me"
