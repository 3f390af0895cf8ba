"""Provenance: how a student was made, recorded in its safetensors metadata (`wsel.provenance`).

It holds the teacher's files with a SHA-256 of each header (a fingerprint of names, dtypes, shapes
and offsets, cheap to check), the options and strategies, the layer maps, the one index set of every
axis (a stride or an explicit list), and for each student tensor its teacher tensor and the axis
label of each dim, from which `wsel verify` rebuilds the exact selection.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from wsel import __version__
from wsel.checkpoint.index import CheckpointIndex
from wsel.errors import CheckpointError
from wsel.layers import kept_by_group
from wsel.plan.model import Plan

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
    """The provenance recorded in a checkpoint written by wsel, or None."""
    raw = index.headers[0].metadata.get(METADATA_KEY) if index.headers else None
    if raw is None:
        return None
    try:
        doc = json.loads(raw)
    except json.JSONDecodeError:
        raise CheckpointError(f"{index.headers[0].source}: {METADATA_KEY} metadata is not valid JSON") from None
    if not isinstance(doc, dict) or not {"teacher", "axes", "tensors"} <= set(doc):
        raise CheckpointError(f"{index.headers[0].source}: {METADATA_KEY} metadata is incomplete")
    return doc
