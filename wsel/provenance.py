"""Provenance: how a student was made, recorded in its safetensors metadata (`wsel.provenance`).

It holds the teacher's files with a SHA-256 of each header (a fingerprint of names, dtypes, shapes
and offsets, cheap to check), the options and strategies, the layer maps, the one index set of every
axis (a stride or an explicit list), and for each student tensor its teacher tensor and the axis
label of each dim, from which `wsel verify` rebuilds the exact selection.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from typing import Any, cast

from wsel import __version__
from wsel.checkpoint.header import MAX_TENSORS, short_repr
from wsel.checkpoint.index import MAX_SHARDS, CheckpointIndex
from wsel.errors import CheckpointError
from wsel.layers import kept_by_group
from wsel.plan.model import Plan
from wsel.select import Selection

METADATA_KEY = "wsel.provenance"
# The options recorded: all but `exclude` (the excluded tensors are recorded by their absence).
RECORDED_OPTIONS = ("layers", "elements", "seed", "attention", "rescale", "dtype")


def fingerprints(index: CheckpointIndex) -> list[dict[str, str]]:
    return [{"file": h.source.name, "header_sha256": hashlib.sha256(h.header_bytes).hexdigest()} for h in index.headers]


def build(plan: Plan) -> dict[str, Any]:
    options = plan.options.to_dict()
    remote = plan.teacher.folder.describe()
    return {
        **({"remote": remote} if remote is not None else {}),  # a Hub teacher: repo, revision, commit
        "wsel_version": __version__,
        "teacher": fingerprints(plan.teacher),
        # another format than safetensors (absent: safetensors, and outputs of such teachers stay as they were)
        **({"teacher_format": plan.teacher.format} if plan.teacher.format != "safetensors" else {}),
        **({"teacher_key": plan.teacher.key} if plan.teacher.key is not None else {}),
        "options": {key: options[key] for key in RECORDED_OPTIONS},
        "path": plan.path,
        "layer_maps": kept_by_group(plan.layer_maps),
        "axes": {name: sel.to_dict() for name, sel in plan.axes.items()},
        "tensors": {
            t.name: {
                "teacher": t.source.name,
                "dims": [str(a) for a in t.axes],
                **({"scale": t.scale} if t.scale else {}),
            }
            for t in plan.written
        },
    }


def encode(provenance: dict[str, Any]) -> str:
    return json.dumps(provenance, separators=(",", ":"), sort_keys=True)


def read(index: CheckpointIndex) -> dict[str, Any] | None:
    """The provenance recorded in a checkpoint written by wsel, checked whole (`check`), or None when there is
    none. Raises CheckpointError, one line, when it is malformed: the metadata comes from a file, and
    `inspect` and `verify` must not trust it further than the header."""
    raw = index.headers[0].metadata.get(METADATA_KEY) if index.headers else None
    if raw is None:
        return None
    where = f"{index.headers[0].source}: {METADATA_KEY} metadata"
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError) as e:  # bad JSON, an integer too long to parse, nesting too deep
        raise CheckpointError(f"{where} is not valid JSON: {e}") from None
    try:
        check(doc)
    except _Malformed as e:
        raise CheckpointError(f"{where} is malformed: {e}") from None
    return cast(dict[str, Any], doc)  # an object: `check` made sure


class _Malformed(Exception):
    """Where a provenance document departs from what `build` writes, and how."""


def check(doc: Any) -> None:
    """A provenance document has exactly the shape `build` gives it: types, and every number in range (an
    axis inside its teacher size, counts below 2**63). Keys a later wsel may add are allowed at the top
    level only. Raises _Malformed naming the field."""
    _expect(isinstance(doc, dict), "the document", "is not an object")
    missing = [key for key in ("teacher", "axes", "tensors") if key not in doc]
    _expect(not missing, "the document", f"lacks {', '.join(missing)}")
    for key in ("wsel_version", "path", "teacher_format", "teacher_key"):
        _expect(isinstance(doc.get(key, ""), str), key, "is not a string")
    _expect(isinstance(doc.get("remote", {}), dict), "remote", "is not an object")
    for key, value in doc.get("remote", {}).items():
        _expect(value is None or isinstance(value, str), f"remote.{key}", "is not a string")
    _expect(isinstance(doc.get("options", {}), dict), "options", "is not an object")
    for key, value in doc.get("options", {}).items():
        _expect(value is None or isinstance(value, str | bool | int | float), f"options.{key}", "is not a value")
    _expect(type(doc["teacher"]) is list and len(doc["teacher"]) <= MAX_SHARDS, "teacher", "is not a list of files")
    for i, file in enumerate(doc["teacher"]):
        _expect(
            isinstance(file, dict)
            and set(file) == {"file", "header_sha256"}
            and isinstance(file["file"], str)
            and isinstance(file["header_sha256"], str)
            and _SHA256.fullmatch(file["header_sha256"]) is not None,
            f"teacher[{i}]",
            "is not {file, header_sha256}",
        )
    _expect(isinstance(doc.get("layer_maps", {}), dict), "layer_maps", "is not an object")
    for group, kept in doc.get("layer_maps", {}).items():
        _expect(
            type(kept) is list and all(type(i) is int and 0 <= i < 2**63 for i in kept),
            f"layer_maps[{group!r}]",
            "is not a list of layer indices",
        )
    _expect(isinstance(doc["axes"], dict), "axes", "is not an object")
    for name, selection in doc["axes"].items():
        try:
            Selection.from_dict(selection)
        except ValueError as e:
            raise _Malformed(f"axes[{short_repr(name)}] {e}") from None
    _expect(isinstance(doc["tensors"], dict) and len(doc["tensors"]) <= MAX_TENSORS, "tensors", "is not an object")
    for name, entry in doc["tensors"].items():
        _expect(
            isinstance(entry, dict)
            and {"teacher", "dims"} <= set(entry) <= {"teacher", "dims", "scale"}
            and isinstance(entry["teacher"], str)
            and type(entry["dims"]) is list
            and all(isinstance(label, str) for label in entry["dims"])
            and _is_scale(entry.get("scale", 1.0)),
            f"tensors[{short_repr(name)}]",
            "is not {teacher, dims[, scale]} with a name, dim labels and a positive scale",
        )


def _expect(ok: bool, field: str, problem: str) -> None:
    if not ok:
        raise _Malformed(f"{field} {problem}")


def _is_scale(value: Any) -> bool:
    return type(value) in (int, float) and math.isfinite(value) and value > 0


_SHA256 = re.compile("[0-9a-f]{64}")
