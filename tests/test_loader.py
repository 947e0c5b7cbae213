"""PairStream and PairLoader on the session's small dataset: ranks, workers, epochs,
resuming, fsspec, transposition."""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np
import pytest
import torch

from musicpairs.loader import LoaderError, PairLoader, PairStream


def epoch_ids(root, *, rank=0, world=1, workers=0, epoch=0, seed=0, batch=4, **kw):
    stream = PairStream(root, rank=rank, world_size=world, seed=seed, **kw)
    loader = PairLoader(stream, batch, num_workers=workers)
    loader.set_epoch(epoch)
    return [i for b in loader for i in b["pair_id"]]


def all_ids(root) -> list[str]:
    return [x["pair_id"] for x in PairStream(root, shuffle=False)]


@pytest.mark.parametrize(("world", "remainder"), [(2, "pad"), (4, "pad"), (4, "drop")])
def test_ranks_times_two_workers_see_every_pair_once_with_equal_counts(small_dataset, world,
                                                                       remainder):
    everything = all_ids(small_dataset)
    n = len(everything)
    per_rank = [epoch_ids(small_dataset, rank=r, world=world, workers=2,
                          remainder=remainder) for r in range(world)]
    expected = -(-n // world) if remainder == "pad" else n // world
    assert [len(x) for x in per_rank] == [expected] * world
    assert expected == len(PairStream(small_dataset, rank=0, world_size=world,
                                      remainder=remainder))
    seen = collections.Counter(i for x in per_rank for i in x)
    if remainder == "pad":
        # Every pair once; the padding repeats the first samples of the epoch's order.
        order = PairStream(small_dataset).global_order()
        padded = {everything[i] for i in order[: expected * world - n]}
        assert set(seen) == set(everything)
        assert {k for k, v in seen.items() if v == 2} == padded
        assert max(seen.values()) <= 2
    else:
        assert max(seen.values()) == 1 and len(seen) == n - n % world
    if world == 2:
        assert n % 2 == 0 and max(seen.values()) == 1  # no remainder: exactly once


def test_same_seed_same_order_and_epochs_differ(small_dataset):
    a = epoch_ids(small_dataset, workers=2, seed=7)
    b = epoch_ids(small_dataset, workers=2, seed=7)
    assert a == b
    assert epoch_ids(small_dataset, workers=2, seed=7, epoch=1) != a
    assert sorted(epoch_ids(small_dataset, workers=2, seed=7, epoch=1)) == sorted(a)
    assert epoch_ids(small_dataset, workers=2, seed=8) != a
    assert a != all_ids(small_dataset)  # shuffled at all


def test_batches_hold_the_samples_in_the_stream_order(small_dataset):
    samples = list(PairStream(small_dataset, seed=3))
    batched = list(PairStream(small_dataset, seed=3, batch_size=5))
    assert [x["pair_id"] for x in samples] == [i for b in batched for i in b["pair_id"]]
    stacked = torch.cat([b["target"] for b in batched])
    assert torch.equal(stacked, torch.stack([x["target"] for x in samples]))
    first = samples[0]
    assert first["source"].dtype == torch.uint8 and first["source"].shape == (2, 128, 256)


@pytest.mark.filterwarnings("ignore:This DataLoader will create")  # 3 workers on 2 cores
@pytest.mark.parametrize(("workers", "stop"), [(0, 5), (2, 4), (2, 5), (3, 5)])
def test_stop_save_resume_gives_exactly_the_rest_of_the_epoch(small_dataset, workers, stop):
    full = epoch_ids(small_dataset, workers=workers, seed=5, epoch=2)
    stream = PairStream(small_dataset, seed=5)
    loader = PairLoader(stream, 4, num_workers=workers)
    loader.set_epoch(2)
    seen = []
    for k, batch in enumerate(loader):
        seen += batch["pair_id"]
        if k == stop - 1:
            break
    state = loader.state_dict()
    fresh = PairLoader(PairStream(small_dataset, seed=5), 4, num_workers=workers)
    fresh.load_state_dict(state)
    rest = [i for b in fresh for i in b["pair_id"]]
    assert len(seen) == 4 * stop
    # The rest comes in the uninterrupted order, also when the next batch is not the
    # first worker's.
    assert seen + rest == full
    # After a finished epoch the next starts from the beginning.
    fresh.set_epoch(3)
    assert len([i for b in fresh for i in b["pair_id"]]) == len(full)


def test_a_bare_stream_resumes_too(small_dataset):
    full = [x["pair_id"] for x in PairStream(small_dataset, seed=1)]
    stream = PairStream(small_dataset, seed=1)
    it = iter(stream)
    head = [next(it)["pair_id"] for _ in range(7)]
    state = stream.state_dict()
    again = PairStream(small_dataset, seed=1)
    again.load_state_dict(state)
    assert head + [x["pair_id"] for x in again] == full


def test_resume_refuses_other_settings(small_dataset):
    loader = PairLoader(PairStream(small_dataset, seed=1), 4, num_workers=2)
    state = loader.state_dict()
    with pytest.raises(LoaderError, match="seed"):
        PairLoader(PairStream(small_dataset, seed=2), 4, num_workers=2).load_state_dict(state)
    with pytest.raises(LoaderError, match="workers"):
        PairLoader(PairStream(small_dataset, seed=1), 4, num_workers=1).load_state_dict(state)


def test_reads_a_dataset_given_as_an_fsspec_url(small_dataset):
    import fsspec

    fs = fsspec.filesystem("memory")
    try:
        for path in Path(small_dataset).rglob("*"):
            if path.is_file() and "_build" not in path.parts:
                fs.pipe(f"/mp-ds/{path.relative_to(small_dataset).as_posix()}",
                        path.read_bytes())
        remote = PairStream("memory://mp-ds", seed=4)
        local = PairStream(small_dataset, seed=4)
        got = list(remote)
        assert [x["pair_id"] for x in got] == [x["pair_id"] for x in local]
        assert all(torch.equal(a["source"], b["source"]) for a, b in zip(got, local,
                                                                        strict=True))
        file_url = PairStream(f"file://{small_dataset}", seed=4)
        assert [x["pair_id"] for x in file_url] == [x["pair_id"] for x in got]
    finally:
        fs.rm("/mp-ds", recursive=True)


def test_transpose_moves_source_and_target_together_without_wrapping(small_dataset):
    plain = {x["pair_id"]: x for x in PairStream(small_dataset, shuffle=False)}
    moved = list(PairStream(small_dataset, shuffle=False, transpose=5))
    shifts = set()
    for x in moved:
        y = plain[x["pair_id"]]
        for k in range(-5, 6):
            if torch.equal(torch.roll(y["source"], k, 1), x["source"]) and \
                    torch.equal(torch.roll(y["target"], k, 1), x["target"]):
                # roll would wrap: the match means nothing crossed the edge either way
                assert int(y["source"].sum()) == int(x["source"].sum())
                assert int(y["target"].sum()) == int(x["target"].sum())
                shifts.add(k)
                break
        else:
            pytest.fail(f"{x['pair_id']}: not one shift of source and target together")
    assert len(shifts) > 3  # random shifts, not one


def test_transpose_never_pushes_notes_off_the_range():
    from musicpairs.loader import shift_pitches

    rolls = torch.zeros((2, 128, 8), dtype=torch.uint8)
    rolls[:, 125, 0] = 90
    pitched = np.array([True, True])
    up = shift_pitches(rolls, 2, pitched)
    assert up[:, 127, 0].tolist() == [90, 90] and int(up.sum()) == int(rolls.sum())


def test_no_such_split_or_dataset(small_dataset, tmp_path):
    with pytest.raises(LoaderError, match="no shards in split"):
        PairStream(small_dataset, split="nope")
    with pytest.raises(LoaderError, match="no manifest.json"):
        PairStream(tmp_path)


def test_each_roll_is_its_own_page_and_reads_as_arrow_does(small_dataset):
    import pyarrow.parquet as pq

    from musicpairs.pages import read_roll_chunk
    from musicpairs.shards import ShardReader, decode_rolls

    shard = sorted(Path(small_dataset).glob("train/*.parquet"))[0]
    reader = ShardReader(shard)
    meta = reader.file.metadata
    for g in range(meta.num_row_groups):
        table = pq.ParquetFile(shard).read_row_group(g)
        for name, shape in (("source", reader.meta.source_shape),
                            ("target", reader.meta.target_shape)):
            with shard.open("rb") as fh:
                chunk = read_roll_chunk(fh, meta, g, name, shape, str(shard))
            assert chunk is not None and chunk._single and len(chunk) == table.num_rows
            expected = decode_rolls(table.column(name), shape)
            assert np.array_equal(chunk.to_numpy(), expected)
            out = np.zeros(shape, np.uint8)
            chunk.read_into(table.num_rows - 1, out)
            assert np.array_equal(out, expected[-1])


@pytest.mark.parametrize("compression", ["zstd", "snappy", "none", "gzip", "lz4"])
def test_shards_written_by_other_tools_stream_the_same(small_dataset, tmp_path, compression):
    """Rewritten with plain pyarrow (pages of many rows; gzip only Arrow can read), the
    dataset streams the same pairs in the same order."""
    import shutil

    import pyarrow.parquet as pq

    copy = tmp_path / "copy"
    shutil.copytree(small_dataset, copy)
    for shard in copy.glob("*/part-*.parquet"):
        pq.write_table(pq.read_table(shard), shard, compression=compression,
                       row_group_size=5)
    original = list(PairStream(small_dataset, shuffle=False))
    rewritten = list(PairStream(copy, shuffle=False))
    assert [x["pair_id"] for x in rewritten] == [x["pair_id"] for x in original]
    for a, b in zip(original, rewritten, strict=True):
        assert torch.equal(a["source"], b["source"]) and torch.equal(a["target"], b["target"])
    by_id = {x["pair_id"]: x for x in original}
    shuffled = list(PairStream(copy, seed=3, shuffle_buffer=7, batch_size=3))
    ids = [i for b in shuffled for i in b["pair_id"]]
    assert sorted(ids) == sorted(by_id) and ids != list(by_id)
    for b in shuffled:
        for i, pair_id in enumerate(b["pair_id"]):
            assert torch.equal(b["target"][i], by_id[pair_id]["target"])


def test_a_corrupt_page_is_an_error_naming_the_shard(small_dataset, tmp_path):
    import shutil

    import pyarrow.parquet as pq

    from musicpairs.pages import _Compact
    from musicpairs.shards import ShardError

    copy = tmp_path / "copy"
    shutil.copytree(small_dataset, copy)
    shard = sorted(copy.glob("train/part-*.parquet"))[0]
    column = pq.ParquetFile(shard).metadata.row_group(0).column(3)  # source
    data = bytearray(shard.read_bytes())
    header = _Compact(memoryview(data), column.data_page_offset)
    header.struct()
    data[header.pos : header.pos + 16] = bytes(16)  # the first roll's LZ4 block
    shard.write_bytes(bytes(data))
    with pytest.raises(ShardError, match=shard.name):
        list(PairStream(copy, shuffle=False))


def test_the_loader_comes_from_the_package_without_importing_torch_early():
    import subprocess
    import sys

    code = ("import sys, musicpairs; assert 'torch' not in sys.modules; "
            "from musicpairs import PairStream, PairLoader; "
            "from musicpairs.loader import PairStream as P; assert PairStream is P; "
            "assert 'torch' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
