"""The shipped models travel with the package: in the wheel and the sdist as built from
this checkout, each small, and each readable with ``weights_only=True``."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
import torch

from musicpairs.model.checkpoint import load_generator

ROOT = Path(__file__).resolve().parent.parent
SHELF = ROOT / "musicpairs" / "pretrained"
MAX_BYTES = 10 * 1000 * 1000


def _shipped() -> list[dict]:
    return json.loads((SHELF / "index.json").read_text())["models"]


def test_shipped_models_are_small_and_load_safely():
    index = _shipped()
    assert {m["name"] for m in index} >= {"pop909-accompaniment"}
    for entry in index:
        path = SHELF / entry["file"]
        assert path.stat().st_size <= MAX_BYTES, entry["name"]
        state = torch.load(path, weights_only=True)
        assert state["decode"]["channels"] and state["pitch_ranges"]
        generator, meta, _, _ = load_generator(path)
        assert meta.task == entry["task"] and meta.steps_per_beat == entry["steps_per_beat"]
        assert meta.source_shape[-1] == entry["window"]
        # The card's scores beat retrieval's (they come from one evaluate run).
        model, retrieval = entry["test_scores"]["model"], entry["test_scores"]["retrieval"]
        assert model["frame_f1"] > retrieval["frame_f1"]
        assert model["onset_f1"] > retrieval["onset_f1"]


def test_wheel_and_sdist_carry_the_shipped_models(tmp_path):
    source = tmp_path / "src"
    shutil.copytree(ROOT / "musicpairs", source / "musicpairs",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    dist = tmp_path / "dist"
    dist.mkdir()
    # The path is written into the code: build_meta rewrites sys.argv while it builds.
    subprocess.run([sys.executable, "-c",
                    f"from setuptools import build_meta as b; d = {str(dist)!r}; "
                    "b.build_wheel(d); b.build_sdist(d)"],
                   cwd=source, check=True, capture_output=True)
    files = {m["file"] for m in _shipped()}
    wanted = {"index.json", *files}

    (wheel,) = dist.glob("*.whl")
    with zipfile.ZipFile(wheel) as z:
        sizes = {Path(i.filename).name: i.file_size for i in z.infolist()
                 if i.filename.startswith("musicpairs/pretrained/")}
    assert set(sizes) == wanted
    assert all(sizes[f] == (SHELF / f).stat().st_size for f in wanted)

    (sdist,) = dist.glob("*.tar.gz")
    with tarfile.open(sdist) as t:
        names = {Path(m.name).name for m in t.getmembers()
                 if "/musicpairs/pretrained/" in m.name}
    assert names == wanted


def _quick(args: list[str]) -> list[str]:
    """A recipe's train arguments cut to 2 steps (evaluated and checkpointed at 2)."""
    out = list(args)
    for option, value in (("--steps", "2"), ("--eval-every", "2"),
                          ("--checkpoint-every", "2")):
        if option in out:
            out[out.index(option) + 1] = value
    return out


@pytest.mark.parametrize("name", [m["name"] for m in _shipped()])
def test_each_recipe_retrains_its_model_for_a_few_steps(name, tmp_path):
    """The commands a model card documents (index.json's ``recipe``) build, train and
    pack a model of the shipped one's shapes and config, here on a few real songs (the
    committed POP909 files; 12 of music21's chorales) for 2 steps."""
    from click.testing import CliRunner

    from musicpairs.cli import main

    entry = next(m for m in _shipped() if m["name"] == name)
    corpus = tmp_path / "corpus"
    if entry["recipe"]["corpus"] == "pop909":
        # The committed POP909 songs in its layout; 001 also filed as songs 011 and 020,
        # whose numbers the split puts in valid and test (pack tunes on valid).
        songs = sorted((ROOT / "tests" / "data" / "pop909").glob("[0-9][0-9][0-9].mid"))
        for number, f in [(f.stem, f) for f in songs] + [("011", songs[0]), ("020", songs[0])]:
            (corpus / number).mkdir(parents=True)
            shutil.copy(f, corpus / number / f"{number}.mid")
    places = {"{corpus}": str(corpus), "{data}": str(tmp_path / "data"),
              "{run}": str(tmp_path / "run"), "{model}": str(tmp_path / f"{name}.pt")}

    def fill(args: list[str]) -> list[str]:
        for key, value in places.items():
            args = [a.replace(key, value) for a in args]
        return args

    runner = CliRunner()
    for step in ("build", "train", "pack"):
        args = fill(entry["recipe"][step])
        if step == "build" and entry["recipe"]["corpus"] == "bach":
            args += ["--limit", "12"]  # of music21's chorales
        if step == "train":
            args = _quick(args)
        result = runner.invoke(main, args)
        assert result.exit_code == 0, (step, result.output)
    _, meta, cfg, state = load_generator(places["{model}"])
    shipped_generator, shipped_meta, shipped_cfg, _ = load_generator(SHELF / entry["file"])
    assert meta == shipped_meta and state["step"] == 2
    # The same config but for where it ran and the lengths _quick cut.
    where = ("data", "out", "steps", "eval_every", "checkpoint_every")
    assert ({k: v for k, v in vars(cfg).items() if k not in where}
            == {k: v for k, v in vars(shipped_cfg).items() if k not in where})
