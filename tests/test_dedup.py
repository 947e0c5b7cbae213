"""Content fingerprints, published duplicate lists, and songs grouped before splits."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from musicpairs.build import BuildConfig, BuildError, build
from musicpairs.dedup import DEFAULT_THRESHOLD, fingerprint_midi, fingerprint_score
from musicpairs.grouping import UnionFind, group_files, shared_pairs
from musicpairs.grouplists import read_group_lists
from musicpairs.midi import Notes, Track, read_midi, score_to_midi_bytes

from conftest import synth_song

# --- fingerprints -----------------------------------------------------------------------


def _shared(a: bytes, b: bytes) -> int:
    return len(np.intersect1d(fingerprint_midi(a), fingerprint_midi(b)))


def rearranged(data: bytes, *, transpose: int = 0, tpq: int | None = None,
               drop_bass: bool = False, cut_bars: int = 0, extra_track: bool = False) -> bytes:
    """Another sequencing of the same song: transposed, at another time division, with
    the bass dropped, bars cut from the start, or a new part added."""
    score = read_midi(data)
    q = score.ticks_per_quarter
    scale = (tpq or q) / q
    cut = cut_bars * 4 * q
    tracks = []
    for t in score.tracks:
        if drop_bass and 32 <= t.program < 40:
            continue
        n = t.notes
        keep = n.start >= cut
        start = ((n.start[keep] - cut) * scale).astype(np.int64)
        end = ((n.end[keep] - cut) * scale).astype(np.int64)
        pitch = (n.pitch[keep].astype(np.int64) + transpose).astype(np.uint8)
        tracks.append(Track(t.name + " copy", t.program, t.is_drum,
                            Notes(start, end, pitch, n.velocity[keep])))
    if extra_track:
        rng = np.random.default_rng(int(np.frombuffer(data, np.uint8).sum()))  # per song
        start = np.arange(64, dtype=np.int64) * (tpq or q)
        tracks.append(Track("Strings", 48, False, Notes(
            start, start + (tpq or q), (55 + rng.integers(0, 12, 64)).astype(np.uint8),
            np.full(64, 60, np.uint8))))
    return score_to_midi_bytes(dataclasses.replace(score, ticks_per_quarter=tpq or q,
                                                   tracks=tracks))


@pytest.mark.parametrize("change", [
    {"transpose": 5}, {"tpq": 96}, {"drop_bass": True}, {"cut_bars": 4},
    {"extra_track": True}, {"transpose": -3, "tpq": 1024, "cut_bars": 2, "extra_track": True},
])
def test_a_rearranged_copy_shares_enough_shingles_and_another_song_does_not(change):
    song = synth_song(1, bars=24)
    assert _shared(song, rearranged(song, **change)) >= DEFAULT_THRESHOLD
    for other in range(2, 8):
        assert _shared(song, synth_song(other, bars=24)) < DEFAULT_THRESHOLD // 2


def test_fingerprints_are_sorted_unique_uint32_and_drums_alone_give_none():
    fp = fingerprint_midi(synth_song(3))
    assert fp.dtype == np.uint32 and len(fp) > 50
    assert np.all(np.diff(fp.astype(np.int64)) > 0)
    score = read_midi(synth_song(3))
    drums = [dataclasses.replace(t, is_drum=True) for t in score.tracks]
    assert len(fingerprint_midi(score_to_midi_bytes(dataclasses.replace(score,
                                                                        tracks=drums)))) == 0


def test_shared_pairs_counts_exactly_and_skips_generic_shingles():
    rng = np.random.default_rng(0)
    sets = [rng.choice(10_000, 300, replace=False) for _ in range(30)]
    sets[1] = np.r_[sets[0][:40], sets[1][40:]]
    generic = np.arange(20_000, 20_010)        # in every file: past max_df
    h = np.concatenate([np.unique(np.r_[s, generic]) for s in sets]).astype(np.uint32)
    f = np.concatenate([np.full(len(np.unique(np.r_[s, generic])), i, np.uint32)
                        for i, s in enumerate(sets)])
    sorted_ = shared_pairs(iter([(h[::2], f[::2]), (h[1::2], f[1::2])]), max_df=29)
    dense = shared_pairs(iter([(h, f)]), max_df=29, n_files=30)
    for keys, counts in (sorted_, dense):
        assert np.all(np.diff(keys.astype(np.float64)) > 0)
        got = dict(zip(keys.tolist(), counts.tolist(), strict=True))
        for a in range(30):
            for b in range(a + 1, 30):
                want = len(np.intersect1d(sets[a], sets[b]))
                assert got.get(a << 32 | b, 0) == want


def test_union_find_roots_are_smallest_members():
    uf = UnionFind(6)
    uf.union(4, 2)
    uf.union(5, 4)
    uf.union(3, 1)
    assert uf.roots().tolist() == [0, 1, 2, 1, 2, 2]


# --- published lists ----------------------------------------------------------------------

MD5 = [hashlib.md5(bytes([i])).hexdigest() for i in range(6)]  # noqa: S324 - test ids


def test_both_published_list_formats_give_the_same_groups(tmp_path):
    first = {f"{MD5[0][0]}__{MD5[0]}": [f"{MD5[1][0]}__{MD5[1]}", f"{MD5[2][0]}__{MD5[2]}"],
             f"{MD5[3][0]}__{MD5[3]}": [f"{MD5[4][0]}__{MD5[4]}"]}
    second = {"ABBA__Dancing Queen": {"survived_file": f"{MD5[0][0]}__{MD5[0]}",
                                      "remove_file_list": [f"{MD5[1][0]}__{MD5[1]}",
                                                           f"lmd_full/x/{MD5[2]}.mid"]},
              "Queen__Bicycle": {"survived_file": MD5[3], "remove_file_list": [MD5[4]]}}
    for name, doc in (("a.json", first), ("b.json", second)):
        (tmp_path / name).write_text(json.dumps(doc))
    want = [sorted(MD5[:3]), sorted(MD5[3:5])]
    assert read_group_lists(tmp_path / "a.json") == sorted(want)
    assert read_group_lists(tmp_path / "b.json") == sorted(want)


def test_a_bad_list_is_a_clear_error(tmp_path):
    (tmp_path / "bad.json").write_text(json.dumps({"x": {"remove_file_list": []}}))
    with pytest.raises(ValueError, match="survived_file"):
        read_group_lists(tmp_path / "bad.json")
    (tmp_path / "worse.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="JSON object"):
        read_group_lists(tmp_path / "worse.json")


# --- builds -------------------------------------------------------------------------------


@pytest.fixture
def copies_corpus(tmp_path) -> Path:
    """Six songs; songs 0 and 1 with three re-sequenced copies each under other names."""
    root = tmp_path / "copies"
    root.mkdir()
    for i in range(6):
        (root / f"song{i}.mid").write_bytes(synth_song(i, bars=24))
    for i in (0, 1):
        song = synth_song(i, bars=24)
        (root / f"copy{i}a.mid").write_bytes(rearranged(song, transpose=2, tpq=96))
        (root / f"copy{i}b.mid").write_bytes(rearranged(song, drop_bass=True, cut_bars=3))
        (root / f"copy{i}c.mid").write_bytes(rearranged(song, extra_track=True))
    return root


def _songs(out: Path) -> dict[str, set[str]]:
    t = pq.read_table(out / "songs.parquet").to_pylist()
    groups: dict[str, set[str]] = {}
    for r in t:
        groups.setdefault(r["song_id"], set()).add(r["file"])
    return groups


def test_content_dedup_puts_every_copy_in_its_song_and_split(copies_corpus, tmp_path):
    out = tmp_path / "ds"
    summary = build(BuildConfig(src="folder", path=str(copies_corpus), task="melody2accomp",
                                out=str(out), workers=1, songs_per_shard=2))
    groups = sorted(sorted(g) for g in _songs(out).values())
    assert groups == sorted([
        ["copy0a.mid", "copy0b.mid", "copy0c.mid", "song0.mid"],
        ["copy1a.mid", "copy1b.mid", "copy1c.mid", "song1.mid"],
        ["song2.mid"], ["song3.mid"], ["song4.mid"], ["song5.mid"]])
    rows = pq.read_table(out / "songs.parquet").to_pylist()
    assert {r["file"]: r["linked_by"] for r in rows}["copy1b.mid"] == "content"
    assert all(0 < r["similarity"] <= 1 for r in rows)
    # Every shard row's song and split agree with songs.parquet.
    split = {r["file"]: (r["song_id"], r["split"]) for r in rows}
    for path in out.glob("*/part-*.parquet"):
        for r in pq.read_table(path, columns=["source_file", "song_id", "split"]).to_pylist():
            assert split[r["source_file"]] == (r["song_id"], r["split"])
    assert summary["dedup"]["songs"] == 6
    assert summary["dedup"]["largest"] == [["copy0a", 4], ["copy1a", 4]]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["dedup"]["files_in_shared_songs"] == 8


def test_md5_and_none_keep_copies_apart_and_keep_one_gives_one_file_a_song(copies_corpus,
                                                                           tmp_path):
    base = dict(src="folder", path=str(copies_corpus), task="melody2accomp", workers=1,
                songs_per_shard=4)
    build(BuildConfig(**base, out=str(tmp_path / "md5"), dedup="md5"))
    assert len(_songs(tmp_path / "md5")) == 12
    build(BuildConfig(**base, out=str(tmp_path / "none"), dedup="none"))
    assert not (tmp_path / "none" / "songs.parquet").exists()
    build(BuildConfig(**base, out=str(tmp_path / "one"), keep="one"))
    files = set()
    for path in (tmp_path / "one").glob("*/part-*.parquet"):
        files |= set(pq.read_table(path, columns=["source_file"]).column(0).to_pylist())
    assert files == {"copy0a.mid", "copy1a.mid", "song2.mid", "song3.mid", "song4.mid",
                     "song5.mid"}


def test_version2version_pairs_the_copies_it_found(copies_corpus, tmp_path):
    out = tmp_path / "v2v"
    summary = build(BuildConfig(src="folder", path=str(copies_corpus),
                                task="version2version", out=str(out), workers=1,
                                min_confidence=0.0))
    assert summary["pairs"] > 0
    found = set()
    for path in out.glob("*/part-*.parquet"):
        t = pq.read_table(path, columns=["source_file", "target_file"]).to_pylist()
        found |= {(r["source_file"], r["target_file"]) for r in t}
    assert ("copy0a.mid", "copy0b.mid") in found
    assert all(a[4] == b[4] for a, b in found)  # never across songs


def test_groups_file_gives_exactly_its_groups(copies_corpus, tmp_path):
    md5 = {p.name: hashlib.md5(p.read_bytes()).hexdigest()  # noqa: S324 - file ids
           for p in copies_corpus.iterdir()}
    doc = {"x__y": {"survived_file": md5["song2.mid"],
                    "remove_file_list": [md5["song3.mid"], md5["copy0a.mid"]]}}
    (tmp_path / "list.json").write_text(json.dumps(doc))
    out = tmp_path / "ds"
    build(BuildConfig(src="folder", path=str(copies_corpus), task="melody2accomp",
                      out=str(out), workers=1, groups=str(tmp_path / "list.json")))
    multi = [sorted(g) for g in _songs(out).values() if len(g) > 1]
    assert multi == [["copy0a.mid", "song2.mid", "song3.mid"]]
    with pytest.raises(BuildError, match="survived_file"):
        (tmp_path / "bad.json").write_text(json.dumps({"x": {"remove_file_list": []}}))
        build(BuildConfig(src="folder", path=str(copies_corpus), task="melody2accomp",
                          out=str(tmp_path / "bad"), groups=str(tmp_path / "bad.json")))


def test_pop909_keeps_its_songs_and_reports_a_copy_across_songs(tmp_path):
    pop909_tree = tmp_path / "pop909"
    for f in sorted((Path(__file__).parent / "data" / "pop909").glob("???.mid")):
        (pop909_tree / f.stem).mkdir(parents=True)
        (pop909_tree / f.stem / f"{f.stem}.mid").write_bytes(f.read_bytes())
    first = sorted(p for p in pop909_tree.iterdir() if p.is_dir())[0]
    twin = pop909_tree / "999"
    twin.mkdir()
    (twin / "999.mid").write_bytes((first / f"{first.name}.mid").read_bytes())
    out = tmp_path / "pop"
    build(BuildConfig(src="pop909", path=str(pop909_tree), task="melody2accomp",
                      out=str(out), workers=1, dedup="content"))
    rows = pq.read_table(out / "songs.parquet").to_pylist()
    assert {r["song_id"] for r in rows} == {p.name for p in pop909_tree.iterdir()
                                            if p.is_dir()}
    copied = {r["file"]: r["copy_of"] for r in rows if r["copy_of"]}
    assert BuildConfig(src="pop909", path="x", task="melody2accomp", out="y").dedup == "none"
    assert BuildConfig(src="bach", task="melody2accomp", out="y").dedup == "none"
    assert copied == {"999/999.mid": f"{first.name}/{first.name}.mid",
                      f"{first.name}/{first.name}.mid": "999/999.mid"}


@pytest.mark.parametrize("stage", ["fingerprints", "partitions"])
def test_sigkill_then_resume_matches_an_uninterrupted_build(stage, copies_corpus, tmp_path):
    args = ["--src", "folder", "--path", str(copies_corpus), "--task", "melody2accomp",
            "--workers", "1", "--songs-per-shard", "1"]
    reference = tmp_path / "reference"
    subprocess.run([sys.executable, "-m", "musicpairs", "build", *args, "--out",
                    str(reference)], check=True, capture_output=True)
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "musicpairs", "build", *args, "--out",
                             str(out)], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    marker = (out / "_build" / "fingerprints").glob if stage == "fingerprints" else \
        (out / "_build").glob
    pattern = "part-*.parquet" if stage == "fingerprints" else "part-*.json"
    deadline = time.monotonic() + 120
    while len(list(marker(pattern))) < 2:
        assert time.monotonic() < deadline, "the build made no progress"
        assert proc.poll() is None, "the build finished before it could be killed"
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "manifest.json").exists()
    if stage == "fingerprints":
        assert not (out / "songs.parquet").exists()
    subprocess.run([sys.executable, "-m", "musicpairs", "build", *args, "--out", str(out),
                    "--resume"], check=True, capture_output=True)
    for name in ("songs.parquet", "rejects.parquet"):
        assert (out / name).read_bytes() == (reference / name).read_bytes()
    shards = sorted(p.relative_to(out) for p in out.glob("*/part-*.parquet"))
    assert shards == sorted(p.relative_to(reference)
                            for p in reference.glob("*/part-*.parquet"))
    for rel in shards:
        assert (out / rel).read_bytes() == (reference / rel).read_bytes()


@pytest.mark.parametrize("parser", ["symusic", "pretty_midi", "miditoolkit"])
def test_a_parsed_score_gives_the_fingerprint_of_its_bytes(parser, real_midi_files):
    for path in [*real_midi_files[:3], None]:
        data = synth_song(5) if path is None else path.read_bytes()
        got = fingerprint_score(read_midi(data, parser=parser))
        assert np.array_equal(got, fingerprint_midi(data, lyrics=False)) and len(got) > 0


def test_an_lmd_full_copy_joins_its_clean_midi_song(tmp_path):
    root = tmp_path / "lakh"
    song = synth_song(4, bars=24)
    (root / "clean_midi" / "Some Band").mkdir(parents=True)
    (root / "clean_midi" / "Some Band" / "Tune.mid").write_bytes(song)
    for data in (rearranged(song, transpose=-2, tpq=192), synth_song(6, bars=24)):
        md5 = hashlib.md5(data).hexdigest()  # noqa: S324 - Lakh names files by md5
        (root / "lmd_full" / md5[0]).mkdir(parents=True, exist_ok=True)
        (root / "lmd_full" / md5[0] / f"{md5}.mid").write_bytes(data)
    out = tmp_path / "ds"
    build(BuildConfig(src="lakh", path=str(root), task="melody2accomp", out=str(out),
                      workers=1))
    rows = pq.read_table(out / "songs.parquet").to_pylist()
    by_song = {}
    for r in rows:
        by_song.setdefault(r["song_id"], []).append(r["file"].split("/")[0])
    assert sorted(by_song.values()) == [["clean_midi", "lmd_full"], ["lmd_full"]]
    assert sorted(by_song["Some Band/Tune"]) == ["clean_midi", "lmd_full"]


def test_resume_keeps_fingerprints_of_this_version_and_computes_older_ones(copies_corpus,
                                                                             tmp_path):
    from musicpairs.datasets import make_corpus
    from musicpairs.dedup import FINGERPRINT_VERSION
    from musicpairs.songs import fingerprint_corpus

    folder = tmp_path / "fp"
    folder.mkdir()
    submitted = []

    def crawl():
        submitted.clear()
        fingerprint_corpus(make_corpus("folder", str(copies_corpus)), None, 6, folder, True,
                           lambda fn, index, *args: (submitted.append(index),
                                                     fn(index, *args)))
        return list(submitted)

    assert crawl() == [0, 1]
    assert crawl() == []                        # both tables are current
    old = pq.read_table(folder / "part-00001.parquet")
    pq.write_table(old.replace_schema_metadata({"musicpairs_fingerprint": "1"}),
                   folder / "part-00001.parquet")
    assert crawl() == [1]
    again = pq.read_table(folder / "part-00001.parquet")
    assert again.equals(old)
    assert again.schema.metadata[b"musicpairs_fingerprint"] == str(FINGERPRINT_VERSION).encode()


def test_files_holding_the_same_shingles_are_counted_once_and_grouped_as_before(
        copies_corpus, tmp_path):
    """Twins (a re-saved copy: other bytes, the same notes) are linked without counting
    their pairs; the songs come out as when every file is counted."""
    from musicpairs.datasets.base import MidiSource
    from musicpairs.grouping import read_fingerprints
    from musicpairs.grouping import twins as find_twins
    from musicpairs.songs import fingerprint_partition

    paths = sorted(copies_corpus.iterdir())
    for i, path in enumerate(paths[:3]):        # three re-saved files: renamed tracks
        score = read_midi(path.read_bytes())
        tracks = [dataclasses.replace(t, name=f"Track {k}") for k, t in enumerate(score.tracks)]
        (copies_corpus / f"resaved{i}.mid").write_bytes(
            score_to_midi_bytes(dataclasses.replace(score, tracks=tracks)))
    paths = sorted(copies_corpus.iterdir())
    folder, plain = tmp_path / "fp", tmp_path / "plain"
    folder.mkdir()
    plain.mkdir()
    fingerprint_partition(0, [(i, MidiSource(str(p))) for i, p in enumerate(paths)],
                          str(folder), True)
    table = pq.read_table(folder / "part-00000.parquet")
    pq.write_table(table.drop_columns(["digest"]), plain / "part-00000.parquet")
    md5, counts, digest = read_fingerprints(folder, len(paths))
    assert len(set(md5)) == len(paths)          # every file has bytes of its own
    song = np.arange(len(paths))
    twins = group_files(song, md5, counts, folder=folder, mode="content", digest=digest)
    every = group_files(song, md5, counts, folder=plain, mode="content")  # no digests
    assert np.array_equal(twins.root, every.root) and twins.how == every.how
    names = [p.name for p in paths]
    assert not read_fingerprints(plain, len(paths))[2].any()  # a table without digests
    twin = find_twins(digest, counts, DEFAULT_THRESHOLD)
    # The re-saved files, and song0 / song1 whose transposed copies 0a / 1a came first.
    assert {names[f] for f in np.flatnonzero(twin != song)} == {
        "resaved0.mid", "resaved1.mid", "resaved2.mid", "song0.mid", "song1.mid"}
    for i in range(3):
        f = names.index(f"resaved{i}.mid")
        assert twin[f] == names.index(paths[i].name) and twins.root[f] == twins.root[twin[f]]
    joined = twins.root != song
    assert np.all(twins.similarity[joined] >= every.similarity[joined] - 1e-6)


def test_many_files_fingerprinted_at_once_are_each_their_own(monkeypatch):
    """One pass over many files gives each file exactly its own fingerprint: no line runs
    from one file into the next, however the files are cut into passes."""
    import musicpairs.dedup as dedup
    from musicpairs.dedup import TrackLine, fingerprint_files, fingerprint_tracks

    def lines(data: bytes) -> tuple[list[TrackLine], int]:
        score = read_midi(data)
        return [TrackLine(t.program, t.notes.start, t.notes.pitch) for t in score.tracks
                if not t.is_drum], score.ticks_per_quarter

    song = synth_song(3)
    files = [lines(song), lines(rearranged(song, tpq=96, transpose=3)),
             ([t for t in lines(song)[0] if t.program == 33], 480),  # the bass alone
             ([], 480), lines(synth_song(8)),
             (lines(song)[0][:1], 480)]                               # one upper part
    alone = [fingerprint_tracks(t, q) for t, q in files]
    assert [len(a) > 0 for a in alone] == [True, True, True, False, True, True]
    for got, want in zip(fingerprint_files(files), alone, strict=True):
        assert np.array_equal(got, want)
    monkeypatch.setattr(dedup, "_MAX_LINES", 4)  # a pass or more per file
    for got, want in zip(fingerprint_files(files), alone, strict=True):
        assert np.array_equal(got, want)
