"""The models that ship inside the package, by name.

``musicpairs/pretrained/index.json`` lists them: for each, its file (a packed generator,
:func:`~musicpairs.model.checkpoint.pack_generator`: int8 weights with fp16 scales, read
with ``weights_only=True``), its task and grid, how it was trained, and its scores on its
dataset's test split against the baselines, from one ``musicpairs evaluate`` run.
``musicpairs models`` prints the list; ``convert --model NAME`` and
:func:`load_pretrained` use one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from musicpairs.errors import MusicpairsError

#: Where the shipped models and their index live (package data).
PRETRAINED = Path(__file__).resolve().parent.parent / "pretrained"
#: What ``convert`` uses when no model or checkpoint is named.
DEFAULT_MODEL = "pop909-accompaniment"


class PretrainedError(MusicpairsError):
    """No shipped model of that name, or its file is missing."""


def models() -> list[dict[str, Any]]:
    """The shipped models' index entries, in the index's order; each with ``path`` (its
    file) and ``bytes`` (its size; None when the file is missing) added."""
    index = PRETRAINED / "index.json"
    if not index.is_file():
        return []
    out = []
    for entry in json.loads(index.read_text())["models"]:
        path = PRETRAINED / entry["file"]
        out.append({**entry, "path": str(path),
                    "bytes": path.stat().st_size if path.is_file() else None})
    return out


def model_path(name: str) -> Path:
    """The file of the shipped model ``name``.

    Raises:
        PretrainedError: No such model (the message lists those there are), or its file
            is not installed.
    """
    found = {m["name"]: m for m in models()}
    if name not in found:
        known = ", ".join(found) or "none in this installation"
        raise PretrainedError(f"no shipped model {name!r} (shipped: {known}; "
                              f"musicpairs models lists them)")
    path = Path(found[name]["path"])
    if not path.is_file():
        raise PretrainedError(f"model {name!r}: its weights {path} are not installed")
    return path


def load_pretrained(name: str = DEFAULT_MODEL, device: str | torch.device = "cpu"):
    """A shipped model, ready to convert: a :class:`~musicpairs.model.evaluate.Generator`
    (G in eval mode, its metadata, pitch ranges and the decoding settings it was tuned
    with).

    >>> from musicpairs.model import load_pretrained
    >>> model = load_pretrained("bach-harmonization")  # doctest: +SKIP
    """
    from musicpairs.model.evaluate import Generator

    return Generator(model_path(name), device)
