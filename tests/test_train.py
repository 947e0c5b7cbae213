"""Training: checkpoints, exact resume (also after SIGKILL), DDP on two CPU ranks,
learning on a few pairs, AMP, and the errors of ``musicpairs train``."""

from __future__ import annotations

import dataclasses
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
import torch
from click.testing import CliRunner

from musicpairs.cli import main
from musicpairs.config import TrainConfig
from musicpairs.loader import PairStream
from musicpairs.model import CheckpointError, Pix2Pix, load_checkpoint, load_generator
from musicpairs.model.evaluate import Generator
from musicpairs.model.metrics import f1_scores
from musicpairs.model.rolls import TRANSPOSITIONS, decode_probabilities, model_input

TINY = ["--ngf", "4", "--ndf", "4", "--batch-size", "2", "--device", "cpu"]


def run_cli(*args: str) -> dict:
    result = CliRunner().invoke(main, ["train", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output.strip().splitlines()[-1])


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def train_ids(dataset: Path) -> list[str]:
    return [i for f in sorted((dataset / "train").glob("*.parquet"))
            for i in pq.read_table(f, columns=["pair_id"]).column("pair_id").to_pylist()]


def test_checkpoint_resume_and_reload(small_dataset, tmp_path):
    run = tmp_path / "run"
    summary = run_cli("--data", str(small_dataset), "--out", str(run), "--steps", "4",
                      "--checkpoint-every", "2", "--eval-every", "2", "--log-every", "1",
                      "--num-workers", "0", "--sample-count", "2", *TINY)
    assert summary["step"] == 4
    assert sorted(p.name for p in run.glob("*.pt")) == ["generator.pt", "last.pt",
                                                        "step-00000002.pt",
                                                        "step-00000004.pt"]
    config = json.loads((run / "config.json").read_text())
    assert config["ngf"] == 4 and config["steps"] == 4
    state = load_checkpoint(run / "last.pt")  # weights_only=True
    assert state["step"] == 4 and state["ranks"][0]["loader"]["consumed"]
    metrics = lines(run / "metrics.jsonl")
    assert [m["step"] for m in metrics if "loss_d" in m] == [1, 2, 3, 4]
    assert all(m["loss_g_recon"] > 0 and m["lr"] > 0 for m in metrics if "loss_d" in m)
    evals = [m for m in metrics if "valid_tuned_frame_f1" in m]
    assert [m["step"] for m in evals] == [2, 4]
    # Two valid pairs drawn at each evaluation, as PNG and as MIDI with generated tracks.
    for step in (2, 4):
        folder = run / "samples" / f"step-{step:08d}"
        assert len(list(folder.glob("*.png"))) == 2
        from musicpairs.midi import read_midi

        names = {t.name for t in read_midi(next(folder.glob("*.mid"))).tracks}
        assert {"source: melody", "generated: accompaniment"} <= names

    # The loaded generator (the moving average of G) reproduces, in eval mode, exactly
    # the valid frame counts the run logged, and decodes with the settings it tuned.
    generator, meta, cfg, state = load_generator(run / "last.pt")
    assert not generator.training and cfg.ngf == 4
    assert state["decode"]["step"] == 4 and state["pitch_ranges"][0] is not None
    model = Generator(run / "last.pt")
    stream = PairStream(small_dataset, "valid", shuffle=False)
    counts, n = np.zeros(3, np.int64), 0
    for batch in PairStream(small_dataset, "valid", shuffle=False, batch_size=2):
        sounding = model.probabilities(batch["source"], 0)[:, 1::3] >= 0.5
        truth = batch["target"][:, 1::2] > 0
        tp = int((sounding & truth).sum())
        counts += (tp, int(sounding.sum()) - tp, int(truth.sum()) - tp)
        n += len(batch["pair_id"])
    assert n == len(stream)
    assert f1_scores(counts)["f1"] == evals[-1]["valid_frame_f1"]
    # Decoding reads G averaged over as many transpositions as were tuned with.
    k = state["decode"]["transpositions"]
    assert k in TRANSPOSITIONS and evals[-1]["valid_transpositions"] == k
    assert torch.equal(model.probabilities(batch["source"]),
                       model.probabilities(batch["source"], k))

    # --resume continues the step count (and may lengthen the run).
    summary = run_cli("--out", str(run), "--resume", "--steps", "6")
    assert summary["step"] == 6
    assert load_checkpoint(run / "last.pt")["step"] == 6
    steps = [m["step"] for m in lines(run / "metrics.jsonl") if "loss_d" in m]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_resume_continues_exactly(small_dataset, tmp_path):
    common = ["--data", str(small_dataset), "--checkpoint-every", "3", "--eval-every", "0",
              "--decay-start", "1.0", "--num-workers", "2", "--sample-count", "0",
              "--log-every", "1", *TINY]
    run_cli(*common, "--out", str(tmp_path / "straight"), "--steps", "6")
    run_cli(*common, "--out", str(tmp_path / "split"), "--steps", "3")
    run_cli("--out", str(tmp_path / "split"), "--resume", "--steps", "6")
    a = load_checkpoint(tmp_path / "straight" / "last.pt")
    b = load_checkpoint(tmp_path / "split" / "last.pt")
    for key in ("generator", "discriminator"):
        assert a[key].keys() == b[key].keys()
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), (key, name)
    losses = [[{k: v for k, v in m.items() if k.startswith("loss")}
               for m in lines(tmp_path / run / "metrics.jsonl") if "loss_d" in m]
              for run in ("straight", "split")]
    assert losses[0] == losses[1]


def _train_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "musicpairs", "train", *args]


def test_sigkill_then_resume_loses_and_repeats_nothing(small_dataset, tmp_path):
    run = tmp_path / "run"
    args = ["--data", str(small_dataset), "--out", str(run), "--checkpoint-every", "3",
            "--eval-every", "0", "--sample-count", "0", "--num-workers", "2",
            "--log-pair-ids", *TINY]
    # Ctrl-C as a terminal sends it, even where this test runs with SIGINT ignored (a
    # background job of a shell without job control: the child would inherit that).
    process = subprocess.Popen(_train_command(*args, "--steps", "100000"),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if (run / "last.pt").exists() and load_checkpoint(run / "last.pt")["step"] >= 6:
                break
            assert process.poll() is None, process.stderr.read().decode()
            time.sleep(0.02)
        else:
            pytest.fail("no checkpoint at step 6 within 2 minutes")
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    killed_at = load_checkpoint(run / "last.pt")["step"]
    for path in run.glob("*.pt"):  # no partial file under a final name
        assert load_checkpoint(path)["step"] > 0

    per_epoch = PairStream(small_dataset, "train").samples_per_rank
    steps_per_epoch = 16  # 30 samples, 2 workers of 15, batches of 2 (the last of 1)
    total = 2 * steps_per_epoch
    assert killed_at < total
    done = subprocess.run(_train_command("--out", str(run), "--resume", "--steps",
                                         str(total)), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    records = lines(run / "pairs.jsonl")
    assert [r["step"] for r in records] == list(range(1, total + 1))
    ids = sorted(train_ids(small_dataset))
    assert per_epoch == len(ids) == 30
    for epoch in (0, 1):
        seen = [i for r in records if r["epoch"] == epoch for i in r["pair_ids"][0]]
        assert sorted(seen) == ids, f"epoch {epoch}"
    # metrics.jsonl lost the lines written after the checkpoint the run resumed from.
    assert [m["step"] for m in lines(run / "metrics.jsonl") if "loss_d" in m] == [total]


def test_ddp_two_cpu_ranks(small_dataset, tmp_path):
    run = tmp_path / "run"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                "--nproc_per_node", "2", "-m", "musicpairs", "train"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = ["--data", str(small_dataset), "--out", str(run), "--steps", "4",
            "--checkpoint-every", "2", "--eval-every", "0", "--sample-count", "0",
            "--num-workers", "0", "--log-every", "1", "--log-pair-ids", *TINY]
    done = subprocess.run([*torchrun, *args], capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    state = load_checkpoint(run / "last.pt")
    assert len(state["ranks"]) == 2 and state["step"] == 4
    # 30 samples: 15 per rank, 8 steps an epoch; resume the second half on 2 ranks.
    done = subprocess.run([*torchrun, "--out", str(run), "--resume", "--steps", "8"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    records = lines(run / "pairs.jsonl")
    assert [r["step"] for r in records] == list(range(1, 9))
    rank0 = [i for r in records for i in r["pair_ids"][0]]
    rank1 = [i for r in records for i in r["pair_ids"][1]]
    assert len(rank0) == len(rank1) == 15
    assert sorted(rank0 + rank1) == sorted(train_ids(small_dataset))
    # Resuming a two-rank run in one process is refused.
    result = CliRunner().invoke(main, ["train", "--out", str(run), "--resume", "--steps", "9"])
    assert result.exit_code == 1 and "2 ranks" in result.output


def _learn_eight_pairs(small_dataset, steps: int, **options):
    """Train the reconstruction-only generator on 8 pairs (cropped to 32 steps); return
    (first loss, last loss, G's probabilities in eval mode, the real targets)."""
    batch = next(iter(PairStream(small_dataset, "train", shuffle=False, batch_size=8)))
    source, target = batch["source"][..., :32], batch["target"][..., :32]
    meta = PairStream(small_dataset, "train").meta
    meta = dataclasses.replace(meta, source_shape=(2, 128, 32), target_shape=(2, 128, 32))
    cfg = TrainConfig(data="unused", out="unused", loss="recon", ngf=16, lr=1e-3,
                      dropout=0.0, ema=0.0, **options)
    torch.manual_seed(0)
    model = Pix2Pix(cfg, meta, torch.device("cpu"), total_steps=steps)
    losses = [float(model.step(source, target)["loss_g_recon"]) for _ in range(steps)]
    model.generator.eval()
    with torch.no_grad():
        probs = model.probabilities(source)
    return losses[0], losses[-1], probs, target


def _frame_scores(probs: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    sounding, truth = probs[:, 1::3] >= 0.5, target[:, 1::2] > 0
    tp = int((sounding & truth).sum())
    return f1_scores((tp, int(sounding.sum()) - tp, int(truth.sum()) - tp))


@pytest.mark.parametrize(("recon", "steps"), [("bce", 600), ("l1", 1000)])
def test_overfits_eight_pairs(small_dataset, recon, steps):
    """Reconstruction-only training learns 8 pairs: every sounding cell found, the
    velocities within a unit of 127 (``bce``: its velocity head; ``l1``: the planes)."""
    first, last, probs, target = _learn_eight_pairs(small_dataset, steps, recon=recon)
    assert last < first / 20, (first, last)
    scores = _frame_scores(probs, target)
    assert scores["recall"] > 0.99 and scores["f1"] > 0.95, scores
    sounding = target[:, 1::2] > 0
    error = (probs[:, 2::3] * 127 - target[:, 1::2].float())[sounding].abs().mean()
    assert float(error) < 1.5, float(error)


def test_plain_l1_collapses_to_silence(small_dataset):
    """Why ``recon_weighting`` is ``balanced`` for ``l1``: under the plain mean the same
    8 pairs come out silent, notes and all."""
    _, _, probs, target = _learn_eight_pairs(small_dataset, 150, recon="l1",
                                             recon_weighting="uniform")
    assert float(probs[:, 1::3][target[:, 1::2] > 0].mean()) < 16 / 127
    assert _frame_scores(probs, target)["recall"] < 0.05


def test_no_lit_borders(small_dataset):
    """Silence is 0, as the convolutions' zero padding: a trained model lights no edge
    rows (the lowest and highest pitches) and no edge columns (every pitch struck at a
    window's first or last step), in its probabilities and in its decoded notes."""
    _, _, probs, target = _learn_eight_pairs(small_dataset, 300)
    frame = probs[:, 1].numpy()  # (8, 128, 32)
    quiet = target[:, 1].numpy() == 0
    for rows in (frame[:, :8], frame[:, -8:]):  # no note there in any pair
        assert rows.max() < 0.5 and rows.mean() < 0.1
    for column in (frame[..., 0][quiet[..., 0]], frame[..., -1][quiet[..., -1]]):
        assert column.max() < 0.5  # no silent cell of the first or last step lit
    planes = decode_probabilities(probs.numpy(), None)  # no pitch range: all 128 kept
    voices = (planes[:, 1] > 0).sum(axis=1)  # (8, 32) pitches sounding per step
    most = int((target[:, 1] > 0).sum(dim=1).max())
    assert voices[:, 0].max() <= most and voices[:, -1].max() <= most
    assert not planes[:, :, :8].any() and not planes[:, :, -8:].any()


def test_pitch_rows_are_all_g_sees_and_all_it_generates(small_dataset, tmp_path):
    """With ``pitch_rows`` 32:96, G works on 64 rows and still learns the 8 pairs (all
    their notes lie there); what it gives back has all 128 rows, silent outside."""
    batch = next(iter(PairStream(small_dataset, "train", shuffle=False, batch_size=8)))
    assert not batch["target"][:, :, :32].any() and not batch["target"][:, :, 96:].any()
    _, last, probs, target = _learn_eight_pairs(small_dataset, 600, pitch_rows="32:96")
    scores = _frame_scores(probs, target)
    assert probs.shape[-2] == 128 and scores["f1"] > 0.95, scores
    assert not probs[:, :, :32].any() and not probs[:, :, 96:].any()

    run = tmp_path / "rows"
    run_cli("--data", str(small_dataset), "--out", str(run), "--steps", "2",
            "--pitch-rows", "32:96", "--num-workers", "0", "--sample-count", "0", *TINY)
    model = Generator(run / "generator.pt")
    assert model.generator.down[0][0].weight.shape[1] == 3  # melody planes + harmony
    x = model_input(batch["source"], True, model.cfg.rows)
    assert x.shape[-2] == 64
    probs = model.probabilities(batch["source"], 0)
    assert probs.shape == (8, 3, 128, batch["source"].shape[-1])
    assert not probs[:, :, :32].any() and not probs[:, :, 96:].any()
    lo, hi = model.pitch_ranges()[0]
    assert 32 <= lo <= hi < 96
    for bad in ("32-96", "0:200", "96:32"):
        with pytest.raises(ValueError, match="pitch_rows"):
            TrainConfig(data="d", out="o", pitch_rows=bad)


# fp16: the scaler skips a first step that overflows, and torch warns that the
# schedule stepped without an optimizer step.
@pytest.mark.filterwarnings(r"ignore:Detected call of `lr_scheduler.step\(\)`")
@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_amp_on_cpu(small_dataset, tmp_path, amp):
    summary = run_cli("--data", str(small_dataset), "--out", str(tmp_path / amp),
                      "--steps", "2", "--amp", amp, "--num-workers", "0", "--log-every", "1",
                      "--sample-count", "0", *TINY)
    assert summary["step"] == 2
    assert all(torch.isfinite(torch.tensor(summary[k])) for k in ("loss_d", "loss_g_recon"))
    state = load_checkpoint(tmp_path / amp / "last.pt")
    assert all(v.dtype == torch.float32 for v in state["generator"].values()
               if v.is_floating_point())


@pytest.mark.parametrize("recon", ["bce", "l1"])
def test_reconstruction_only_has_no_discriminator(small_dataset, tmp_path, recon):
    summary = run_cli("--data", str(small_dataset), "--out", str(tmp_path / "recon"),
                      "--steps", "2", "--loss", "recon", "--recon", recon, "--num-workers",
                      "0", "--log-every", "1", "--sample-count", "0", *TINY)
    assert "loss_d" not in summary and summary["loss_g_recon"] > 0
    assert load_checkpoint(tmp_path / "recon" / "last.pt")["discriminator"] is None


def test_errors(small_dataset, tmp_path):
    runner = CliRunner()

    def fails(*args: str) -> str:
        result = runner.invoke(main, ["train", *args])
        assert result.exit_code != 0
        assert "Traceback" not in result.output
        return result.output

    assert "no manifest.json" in fails("--data", str(tmp_path), "--out", str(tmp_path / "r"))
    assert "--data is required" in fails("--out", str(tmp_path / "r"))
    assert "nothing to resume" in fails("--out", str(tmp_path / "none"), "--resume")
    old = tmp_path / "old"  # a run of a musicpairs before the reconstruction heads
    old.mkdir()
    (old / "config.json").write_text(json.dumps({"data": str(small_dataset), "out": str(old),
                                                 "lambda_l1": 100.0}))
    assert "an older run cannot go on" in fails("--out", str(old), "--resume")
    run = tmp_path / "run"
    run_cli("--data", str(small_dataset), "--out", str(run), "--steps", "1",
            "--num-workers", "0", "--sample-count", "0", *TINY)
    assert "--resume" in fails("--data", str(small_dataset), "--out", str(run))
    assert "ngf" in fails("--out", str(run), "--resume", "--ngf", "8")
    assert "must be >= 1" in fails("--data", str(small_dataset), "--out", str(tmp_path / "x"),
                                   "--batch-size", "0")
    assert "max_filters must be >= ngf" in fails("--data", str(small_dataset), "--out",
                                                 str(tmp_path / "x"), "--ngf", "8",
                                                 "--max-filters", "4")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="bad.pt"):
        load_checkpoint(bad)
    torch.save({"weights": torch.zeros(1)}, bad)
    with pytest.raises(CheckpointError, match="not a musicpairs"):
        load_checkpoint(bad)


def test_ctrl_c_before_the_first_checkpoint_then_resume_or_start_again(small_dataset,
                                                                        tmp_path):
    run = tmp_path / "run"
    args = ["--data", str(small_dataset), "--out", str(run), "--checkpoint-every", "100000",
            "--eval-every", "0", "--sample-count", "0", "--num-workers", "0",
            "--log-every", "1", *TINY]
    # Ctrl-C as a terminal sends it, even where this test runs with SIGINT ignored (a
    # background job of a shell without job control: the child would inherit that).
    process = subprocess.Popen(_train_command(*args, "--steps", "100000"),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 120
        while not (run / "metrics.jsonl").is_file() or not lines(run / "metrics.jsonl"):
            assert time.monotonic() < deadline, "no step logged within 2 minutes"
            assert process.poll() is None, process.stderr.read().decode()
            time.sleep(0.02)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert not (run / "last.pt").exists() and (run / "config.json").is_file()
    done = subprocess.run(_train_command("--out", str(run), "--resume", "--steps", "3"),
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert load_checkpoint(run / "last.pt")["step"] == 3
    assert [m["step"] for m in lines(run / "metrics.jsonl") if "loss_g_recon" in m] == [1, 2, 3]

    again = tmp_path / "again"  # the same interruption, then a fresh start in the folder
    again.mkdir()
    (again / "config.json").write_text((run / "config.json").read_text())
    (again / "metrics.jsonl").write_text('{"step": 7, "loss_g_recon": 1.0}\n')
    fresh = subprocess.run(_train_command(*[a if a != str(run) else str(again) for a in args],
                                          "--steps", "2"), capture_output=True, text=True)
    assert fresh.returncode == 0, fresh.stderr
    assert [m["step"] for m in lines(again / "metrics.jsonl") if "loss_g_recon" in m] == [1, 2]


def test_plot_draws_a_run_and_names_a_folder_without_metrics(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text("".join(
        json.dumps({"step": s, "epoch": 0, "loss_d": 0.7, "loss_g_gan": 0.7,
                    "loss_g_recon": 1 / s, "lr": 2e-4}) + "\n" for s in range(1, 20))
        + json.dumps({"step": 19, "epoch": 0, "valid_tuned_onset_f1": 0.3, "valid_frame_f1": 0.2,
                      "valid_frame_precision": 0.3, "valid_frame_recall": 0.1,
                      "valid_tuned_frame_f1": 0.25}) + "\n")
    runner = CliRunner()
    result = runner.invoke(main, ["plot", str(run)])
    assert result.exit_code == 0, result.output
    png = run / "curves.png"
    assert result.output.strip() == str(png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.invoke(main, ["plot", str(empty)])
    assert result.exit_code == 1
    assert "no metrics.jsonl" in result.output and "Traceback" not in result.output


def test_progress_estimates_the_run_and_logs_every_few_seconds_without_a_terminal(capfd):
    from musicpairs.cli.train import _Progress

    now = [0.0]
    progress = _Progress(every=10, clock=lambda: now[0], tty=False)
    for step in range(1, 41):
        now[0] += 5.0 if step == 1 else 2.0  # the first step pays for warm-up
        progress(step, 100, {"loss_g_recon": 0.5})
    err = capfd.readouterr().err.splitlines()
    assert err[0] == "train: 2.00 s a step; 100 steps take about 3:20 (3:12 from here)"
    assert err[1].startswith("train: 6/100 (6 %), ETA 3:08 loss_g_recon=0.5")
    assert len(err) == 1 + 7  # a line every 10 s of 2 s steps, steps 6 .. 36


def test_stop_at_ends_a_run_early_with_a_checkpoint_it_can_resume(small_dataset, tmp_path):
    from musicpairs.config import TrainConfig
    from musicpairs.model.train import train

    run = tmp_path / "run"
    cfg = TrainConfig(data=str(small_dataset), out=str(run), steps=100_000, ngf=4, ndf=4,
                      batch_size=2, device="cpu", num_workers=0, sample_count=0,
                      eval_every=0, checkpoint_every=100_000, log_every=100_000)
    summary = train(cfg, stop_at=time.monotonic() + 2.0)
    stopped = summary["step"]
    assert 0 < stopped < 100_000
    state = load_checkpoint(run / "last.pt")
    assert state["step"] == stopped and state["decode"]  # evaluated, thresholds tuned
    assert [m["step"] for m in lines(run / "metrics.jsonl") if "loss_g_recon" in m] == [stopped]
    more = train(dataclasses.replace(cfg, steps=stopped + 2), resume=True)
    assert more["step"] == stopped + 2


def test_the_weights_only_export_is_small_and_generates_what_the_checkpoint_does(
        small_dataset, tmp_path):
    from musicpairs.model import load_generator

    run = tmp_path / "run"
    run_cli("--data", str(small_dataset), "--out", str(run), "--steps", "2",
            "--num-workers", "0", "--sample-count", "0", "--ngf", "8", "--ndf", "8",
            "--batch-size", "2", "--device", "cpu")
    export, last = run / "generator.pt", run / "last.pt"
    state = torch.load(export, weights_only=True)
    assert state["kind"] == "generator" and state["step"] == 2 and "opt_g" not in state
    assert export.stat().st_size < 0.2 * last.stat().st_size
    meta = load_generator(export)[1]
    source = torch.randint(0, 128, (2, *meta.source_shape), dtype=torch.uint8)
    assert torch.allclose(Generator(export).probabilities(source),
                          Generator(last).probabilities(source), atol=2e-2)
