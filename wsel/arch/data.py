"""wsel's packaged data files (`wsel/arch/*.json`, `wsel/arch/names/*.json`), found through
`importlib.resources` (so they are read from wherever the package was installed) and validated strictly:
a missing folder, an empty one, a missing or unknown field, or a field of the wrong type is an error, never
an empty list or a silent default.
"""

from __future__ import annotations

import json
from importlib import resources
from importlib.abc import Traversable
from typing import Any

from wsel.errors import ArchDataError

PACKAGE = "wsel.arch"


def data_files(folder: str | None = None) -> list[Traversable]:
    """The `*.json` files of the package's data folder (`None`: the family files beside this module;
    `"names"`: the name sets), sorted by name. Raises ArchDataError when there are none."""
    root = resources.files(PACKAGE)
    where = root.joinpath(folder) if folder else root
    found = [f for f in where.iterdir() if f.name.endswith(".json")] if where.is_dir() else []
    if not found:
        raise ArchDataError(f"{where}: no data files; this installation of wsel is incomplete: reinstall wsel")
    return sorted(found, key=lambda f: f.name)


def read_document(path: Traversable, fields: dict[str, type | tuple[type, ...]]) -> dict[str, Any]:
    """A data file's JSON object, with exactly `fields`, each of its type. Raises ArchDataError naming the file."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ArchDataError(f"{path}: cannot read: {e}") from None
    if not isinstance(doc, dict):
        raise ArchDataError(f"{path}: expected a JSON object")
    unknown = sorted(set(doc) - set(fields))
    missing = sorted(set(fields) - set(doc))
    if unknown or missing:
        raise ArchDataError(f"{path}: unknown fields {unknown}, missing fields {missing}")
    for key, kind in fields.items():
        if not isinstance(doc[key], kind):
            raise ArchDataError(f"{path}: {key} has the wrong type")
    return doc


def string_list(path: Traversable, where: str, value: Any) -> list[str]:
    """`value` when it is a list of strings; else an ArchDataError naming the file and field."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ArchDataError(f"{path}: {where}: expected a list of strings")
    return value
