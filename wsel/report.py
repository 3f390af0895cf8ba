"""The report: a stable dict (`--json`) built from the Plan and the run Stats (rendered by `wsel.render`).

Keys of the dict are documented in README.md ("JSON report") and only ever added to.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

from wsel import __version__, provenance
from wsel.checkpoint.index import CheckpointIndex
from wsel.errors import WselError
from wsel.layers import compact_ranges, find_layer
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
    experts = expert_maps(plan.axes)
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
        **({"expert_maps": experts} if experts else {}),  # mixture-of-experts students only
        "axes": {name: sel.to_dict() for name, sel in plan.axes.items()},
        "tensors": [_tensor_entry(t, plan.axes) for t in plan.tensors],
        "excluded": [t.name for t in plan.excluded],
        "warnings": [*teacher.notes, *plan.warnings],
        **({"checks": list(plan.checks)} if plan.checks else {}),  # config-driven generic path only
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


def expert_maps(axes: dict[str, Selection]) -> list[dict[str, Any]]:
    """The experts each student layer keeps (its `experts[i]` axis), one entry per run of consecutive layers
    that keep the same ones: `{"layers": "0-3", "teacher_experts": 8, "kept": [0, 2, 4, 6], ...}`."""
    by_layer = sorted(
        (int(m.group(1)), sel) for name, sel in axes.items() if (m := _EXPERTS_AXIS.fullmatch(name)) is not None
    )
    runs: list[tuple[list[int], Selection]] = []
    for layer, sel in by_layer:
        if runs and runs[-1][1] == sel and runs[-1][0][-1] + 1 == layer:
            runs[-1][0].append(layer)
        else:
            runs.append(([layer], sel))
    maps = []
    for layers, sel in runs:
        kept = [int(i) for i in sel.indices()]
        marked = set(kept)
        maps.append(
            {
                "layers": compact_ranges(layers),
                "teacher_experts": sel.teacher_size,
                "kept": kept,
                "summary": f"{_kept_text(sel)} of {sel.teacher_size}",
                "picture": "".join("■" if i in marked else "□" for i in range(sel.teacher_size)),
            }
        )
    return maps


_EXPERTS_AXIS = re.compile(r"experts\[([0-9]+)\]")


def _kept_text(sel: Selection) -> str:
    """`0-3,6`, or for a long evenly spaced set (64 of DeepSeek-V3's 256 experts) `0,4,8,...,252 (every 4th)`."""
    kept = [int(i) for i in sel.indices()]
    text = compact_ranges(kept)
    if len(text) > 40 and sel.explicit is None and sel.step > 1:
        return f"{kept[0]},{kept[1]},{kept[2]},...,{kept[-1]} (every {_ordinal(sel.step)})"
    return text


def _ordinal(n: int) -> str:
    """`2nd`, `3rd`, `4th`, `11th`, `21st`."""
    suffix = "th" if n % 100 in (11, 12, 13) else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def teacher_report(teacher: CheckpointIndex) -> dict[str, Any]:
    """`wsel inspect --teacher T` with no student: what the checkpoint holds (and, for a checkpoint
    written by wsel, how it was made; a malformed record is a warning, not a failure: the tensors are still
    worth showing)."""
    warnings = teacher.notes
    try:
        record = provenance.read(teacher)
    except WselError as e:
        record = None
        warnings.append(str(e))
    return {
        "provenance": record,
        "warnings": warnings,
        "schema": SCHEMA_VERSION,
        "wsel_version": __version__,
        "command": "inspect",
        "teacher": _teacher_summary(teacher),
        "family": _family(teacher),
        "tensors": sorted(
            (
                {"name": t.name, "shape": list(t.shape), "dtype": t.dtype, "bytes": t.nbytes, "file": file}
                for header in teacher.headers
                for file in (header.source.name,)  # once per file, not per tensor
                for t in header.tensors
            ),
            key=lambda entry: natural_key(entry["name"]),
        ),
    }


def dumps(doc: dict[str, Any]) -> str:
    """The report as JSON text: each top-level key on its own line, each element of a list (a tensor, a
    layer map) on one compact line. Readable, and fast: the C encoder does every element (an indented dump
    goes through the pure-Python encoder, minutes for 100,000s of tensors)."""

    one = json.JSONEncoder(separators=(", ", ": ")).encode  # built once: json.dumps builds one per call

    lines = ["{"]
    for i, (key, value) in enumerate(doc.items()):
        comma = "," if i < len(doc) - 1 else ""
        if isinstance(value, list) and value:
            lines.append(f"  {one(key)}: [")
            lines += [f"    {one(item)}{',' if j < len(value) - 1 else ''}" for j, item in enumerate(value)]
            lines.append(f"  ]{comma}")
        else:
            lines.append(f"  {one(key)}: {one(value)}{comma}")
    return "\n".join([*lines, "}"])


def natural_key(name: str) -> str:
    """Sort key that orders numbers in names as numbers: `layers.2.` before `layers.10.`. Each run of ASCII
    digits becomes NUL, its length without leading zeros, then the digits: numbers compare by length, then
    digits (no int() of a name's thousands of digits), and before any text at the same place."""
    return _DIGIT_RUN.sub(_padded_number, name)


_DIGIT_RUN = re.compile(r"[0-9]+")


def _padded_number(run: re.Match[str]) -> str:
    digits = run.group().lstrip("0") or "0"
    return f"\0{len(digits):09d}{digits}"


def _family(teacher: CheckpointIndex) -> dict[str, Any]:
    """What wsel knows of the teacher's family: the model_type its config.json names and the architecture
    data for it; or, without a config.json, the name set its tensor names match."""
    from wsel.arch import detect_name_set, for_model_type

    model_type = None
    if teacher.config is not None:  # a GGUF file's metadata
        model_type = str(teacher.config.get("model_type"))
    elif teacher.folder.has("config.json"):
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
    if teacher.format != "safetensors":
        summary["format"] = teacher.format
        if teacher.key is not None:
            summary["key"] = teacher.key
        quantized = Counter(t.stored.quant for t in teacher.tensors.values() if t.stored and t.stored.quant)
        if quantized:  # GGML block types, decoded to float32 when read
            summary["quantized"] = dict(sorted(quantized.items()))
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
