"""Published near-duplicate lists (``build --groups``), read as groups of files by md5."""

from __future__ import annotations

import re
from pathlib import Path

from musicpairs.grouping import UnionFind

_MD5 = re.compile(r"[0-9a-f]{32}")


def read_group_lists(path: str | Path) -> list[list[str]]:
    """Groups of files (by md5) from a published near-duplicate list.

    Two JSON layouts are read, both as the ISMIR 2025 Lakh de-duplication lists write
    them, files named ``<h>__<md5>`` (``lmd_full/<h>/<md5>.mid``) or by path:

    * ``{"h__md5": ["h__md5", ...]}``: a file and its duplicates;
    * ``{"artist__title": {"survived_file": "h__md5", "remove_file_list": [...]}}``.

    A plain ``{"name": ["md5", ...]}`` reads as the first layout.

    Raises:
        ValueError: The file is not JSON in either layout, or names no md5.

    Returns:
        The groups, each a sorted list of md5s; groups that share a file are merged.
    """
    import json

    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: cannot read a duplicate list: {e}") from e
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: a duplicate list is a JSON object, got {type(doc).__name__}")

    def md5s(*entries) -> list[str]:
        found = []
        for entry in entries:
            hit = _MD5.findall(str(entry).lower())
            if not hit:
                raise ValueError(f"{path}: {entry!r} names no md5")
            found.append(hit[-1])
        return found

    raw: list[list[str]] = []
    for key, value in doc.items():
        if isinstance(value, dict):
            if "survived_file" not in value:
                raise ValueError(f"{path}: {key!r} has no 'survived_file'")
            raw.append(md5s(value["survived_file"], *value.get("remove_file_list", [])))
        elif isinstance(value, list):
            head = md5s(key) if _MD5.search(str(key).lower()) else []
            raw.append(head + md5s(*value))
        else:
            raise ValueError(f"{path}: {key!r} is neither a list nor a survived_file entry")
    if not any(raw):
        raise ValueError(f"{path}: names no files")
    # Merge groups that share a file, as overlapping published clusters do.
    index = {m: i for i, m in enumerate(sorted({m for g in raw for m in g}))}
    uf = UnionFind(len(index))
    for g in raw:
        for m in g[1:]:
            uf.union(index[g[0]], index[m])
    merged: dict[int, list[str]] = {}
    for m, i in index.items():
        merged.setdefault(uf.find(i), []).append(m)
    return sorted(sorted(g) for g in merged.values())
