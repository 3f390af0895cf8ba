"""The report: a stable dict (`--json`) built from the Plan and the run Stats (rendered by `wsel.render`).

Keys of the dict are documented in README.md ("JSON report") and only ever added to.
"""

from __future__ import annotations

import json
import re
from typing import Any

from wsel import __version__, provenance
from wsel.checkpoint.index import CheckpointIndex
from wsel.errors import WselError
from wsel.layers import find_layer
from wsel.plan.model import ExcludedTensor, Plan, WrittenTensor
from wsel.select import Selection
from wsel.stats import Stats

SCHEMA_VERSION = 1


def plan_report(plan: Plan, stats: Stats | None, command: str) -> dict[str, Any]:
    """Everything the table shows, as plain JSON-able data."""
    teacher = plan.teacher
    written = plan.written
    used_sources = {t.source.name for t in written}
    teacher_bytes = teacher.total_bytes
    tensor_bytes = sum(t.nbytes for t in written)
    return {
        "schema": SCHEMA_VERSION,
        "wsel_version": __version__,
        "command": command,
        "teacher": _teacher_summary(teacher),
        "student": {
            "config": plan.student.source,
            "kind": plan.student.kind,
            "tensors": len(plan.student_tensors),
        },
        "options": plan.options.to_dict(),
        "path": plan.path,
        "layer_maps": [m.to_dict() for m in plan.layer_maps],
        "axes": {name: sel.to_dict() for name, sel in plan.axes.items()},
        "tensors": [_tensor_entry(t, plan.axes) for t in plan.tensors],
        "excluded": [t.name for t in plan.excluded],
        "warnings": list(plan.warnings),
        "totals": {
            "tensors_written": len(written),
            "parameters": sum(t.numel for t in written),
            "bytes": tensor_bytes,
            "teacher_bytes": teacher_bytes,
            "teacher_share": round(tensor_bytes / teacher_bytes, 6) if teacher_bytes else 0.0,
            "teacher_tensors_unused": len(teacher.tensors) - len(used_sources),
        },
        "run": None if stats is None else _run_entry(stats),
    }


def teacher_report(teacher: CheckpointIndex) -> dict[str, Any]:
    """`wsel inspect --teacher T` with no student: what the checkpoint holds (and, for a checkpoint
    written by wsel, how it was made)."""
    return {
        "provenance": provenance.read(teacher),
        "schema": SCHEMA_VERSION,
        "wsel_version": __version__,
        "command": "inspect",
        "teacher": _teacher_summary(teacher),
        "family": _family(teacher),
        "tensors": [
            {"name": t.name, "shape": list(t.shape), "dtype": t.dtype, "bytes": t.nbytes, "file": t.file.name}
            for t in sorted(teacher.tensors.values(), key=lambda t: natural_key(t.name))
        ],
    }


def natural_key(name: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key that orders numbers in names as numbers: `layers.2.` before `layers.10.`."""
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"([0-9]+)", name))


def _family(teacher: CheckpointIndex) -> dict[str, Any]:
    """What wsel knows of the teacher's family: the model_type its config.json names and the architecture
    data for it; or, without a config.json, the name set its tensor names match."""
    from wsel.arch import detect_name_set, for_model_type

    model_type = None
    if teacher.folder.has("config.json"):
        try:
            config = json.loads(teacher.folder.read_small("config.json"))
        except (ValueError, RecursionError, WselError):  # an unreadable config: reported as none
            config = None
        if isinstance(config, dict) and isinstance(config.get("model_type"), str):
            model_type = config["model_type"]
    arch = for_model_type(model_type) if model_type is not None else None
    name_set = detect_name_set(teacher.tensors)
    return {
        "model_type": model_type,
        "architecture": arch.name if arch is not None else None,
        "name_set": name_set.name if name_set is not None else None,
    }


def _teacher_summary(teacher: CheckpointIndex) -> dict[str, Any]:
    groups: dict[str, set[int]] = {}
    for name in teacher.tensors:
        ref = find_layer(name)
        if ref is not None:
            groups.setdefault(ref.group, set()).add(ref.index)
    summary = {
        "path": teacher.location,
        "files": [f.name for f in teacher.files],
        "tensors": len(teacher.tensors),
        "parameters": sum(t.numel for t in teacher.tensors.values()),
        "bytes": teacher.total_bytes,
        "layer_groups": [{"group": g, "layers": len(groups[g])} for g in sorted(groups)],
    }
    remote = teacher.folder.describe()
    if remote is not None:  # a Hub repo (repo, revision, commit, subfolder, endpoint) or a URL's folder
        summary["remote"] = remote
    return summary


def _dim_entry(axis: str, text: str, sel: Selection, axes: dict[str, Selection]) -> dict[str, Any]:
    """One dim of a tensor. A dim that is one axis carries its selection; a composite dim
    (`heads[0]*head_dim`, fused blocks) names its axes, whose selections are under the report's `axes`."""
    if axis in axes or sel.explicit is None:  # one axis, or compact (copy / stride) anyway
        return {"axis": axis, "text": text, **sel.to_dict()}
    return {"axis": axis, "text": text, "rule": "composite", "teacher": sel.teacher_size, "student": sel.size}


def _tensor_entry(t: WrittenTensor | ExcludedTensor, axes: dict[str, Selection]) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": t.name, "shape": list(t.shape), "dtype": t.dtype, "action": t.action}
    if isinstance(t, ExcludedTensor):
        entry["reason"] = t.reason
        return entry
    dims = zip(t.axes, t.texts, t.selections, strict=True)
    entry.update(
        teacher=t.source.name,
        teacher_shape=list(t.source.shape),
        teacher_dtype=t.source.dtype,
        dims=[_dim_entry(str(axis), text, sel, axes) for axis, text, sel in dims],
        scale=t.scale,
        bytes=t.nbytes,
    )
    return entry


def _run_entry(stats: Stats) -> dict[str, Any]:
    return {
        "files": [str(f) for f in stats.files],
        "tensor_bytes": stats.tensor_bytes,
        "file_bytes": stats.file_bytes,
        "bytes_read": stats.bytes_read,
        "bytes_fetched": stats.bytes_fetched,
        "requests": stats.requests,
        "retries": stats.retries,
        "seconds": round(stats.seconds, 3),
    }
