"""`wsel verify`: prove, streaming, that every student tensor is its recorded selection of the teacher."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from wsel import provenance
from wsel.axes import DimLabel, compose, composed_size, linear_and_1x1_conv
from wsel.checkpoint.dtypes import CAST_TARGETS, DTYPES, element_size
from wsel.checkpoint.index import CheckpointIndex
from wsel.checkpoint.reader import DEFAULT_BLOCK_BYTES, Chunk, TensorReader
from wsel.checkpoint.transform import transform_chunks
from wsel.errors import CheckpointError
from wsel.select import Selection, identity


@dataclass
class VerifyResult:
    checked: int = 0
    mismatches: list[str] = field(default_factory=list)  # one line each: tensor and what differs

    @property
    def ok(self) -> bool:
        return not self.mismatches


def verify(teacher: CheckpointIndex, student: CheckpointIndex, block_bytes: int = DEFAULT_BLOCK_BYTES) -> VerifyResult:
    """Compare every student tensor with the selection its provenance records. Raises CheckpointError
    when the student has no provenance (it was not written by wsel)."""
    record = provenance.read(student)
    if record is None:
        key = provenance.METADATA_KEY
        raise CheckpointError(
            f"{student.location}: no {key} metadata; only checkpoints written by wsel can be verified"
        )
    result = VerifyResult()
    current = {f["file"]: f["header_sha256"] for f in provenance.fingerprints(teacher)}
    for recorded in record["teacher"]:
        if current.get(recorded["file"]) != recorded["header_sha256"]:
            result.mismatches.append(
                f"teacher file {recorded['file']}: not the file the student was made from (header fingerprint differs)"
            )
    recorded_key = record.get("teacher_key")
    if recorded_key is not None and recorded_key != teacher.key:
        result.mismatches.append(
            f"the student was made from the teacher's state dict {recorded_key!r}, not "
            f"{'the top level' if teacher.key is None else repr(teacher.key)}; pass --teacher-key {recorded_key}"
        )
    axes = {name: Selection.from_dict(sel) for name, sel in record["axes"].items()}
    tensors: dict[str, dict[str, Any]] = record["tensors"]
    for name in sorted(set(student.tensors) - set(tensors)):
        result.mismatches.append(f"{name}: in the student but not in its provenance")
    with TensorReader(block_bytes) as reader:
        for name, entry in tensors.items():
            problem = _check(name, entry, axes, teacher, student, reader)
            result.checked += 1
            if problem:
                result.mismatches.append(f"{name}: {problem}")
    return result


def _check(
    name: str,
    entry: dict[str, Any],
    axes: dict[str, Selection],
    teacher: CheckpointIndex,
    student: CheckpointIndex,
    reader: TensorReader,
) -> str | None:
    mine = student.tensors.get(name)
    source = teacher.tensors.get(entry["teacher"])
    if mine is None:
        return "recorded in the provenance but missing from the student"
    if source is None:
        return f"its teacher tensor {entry['teacher']!r} is not in the teacher"
    try:
        labels = [DimLabel.parse(label) for label in entry["dims"]]
        dims = list(zip(labels, source.shape, strict=True))
        # no indices for a tensor without elements: its other dims may be astronomically large
        sizes = [composed_size(label, axes, size) for label, size in dims]
        selections = [compose(label, axes, size) for label, size in dims] if source.numel else []
    except ValueError as e:
        return f"cannot rebuild its selection: {e}"
    same_weight = linear_and_1x1_conv(tuple(sizes), mine.shape) and tuple(sizes[:2]) == mine.shape[:2]
    if tuple(sizes) != mine.shape and not same_weight:
        return f"shape {list(mine.shape)} differs from the recorded selection's {sizes}"
    if not source.numel:
        return None
    transformed = mine.dtype != source.dtype or entry.get("scale")
    if transformed and not _wsel_transforms(source.dtype, mine.dtype):
        return f"dtype {mine.dtype} is neither the teacher's {source.dtype} nor a --dtype cast of it"
    expected: Iterable[Chunk] = reader.iter_selected(source, selections)
    if transformed:
        expected = transform_chunks(expected, source.dtype, mine.dtype, entry.get("scale"))
    actual = reader.iter_selected(mine, [identity(d) for d in mine.shape])  # the student's bytes, streamed
    offset = _first_difference(expected, actual)
    return None if offset is None else f"differs from its selection of {entry['teacher']!r} at byte {offset}"


def _wsel_transforms(source: str, target: str) -> bool:
    """Whether wsel casts or rescales `source` elements into `target` ones (floats, whole bytes only)."""
    float_bytes = DTYPES[source].kind == "float" and element_size(source) is not None
    return float_bytes and (target == source or target in CAST_TARGETS.values())


def _first_difference(expected: Iterable[Chunk], actual: Iterable[Chunk]) -> int | None:
    """The first byte offset where two chunked byte streams differ (or one ends early), else None."""
    position = 0
    pending = memoryview(b"")  # bytes of `actual` not yet compared
    actual_chunks = iter(actual)
    for chunk in expected:
        view = memoryview(chunk)
        while view:
            if not pending:
                pending = memoryview(next(actual_chunks, b""))
                if not pending:
                    return position  # the student's bytes end early
            n = min(len(view), len(pending))
            if view[:n] != pending[:n]:
                diff = np.frombuffer(view[:n], np.uint8) != np.frombuffer(pending[:n], np.uint8)
                return position + int(np.flatnonzero(diff)[0])
            view, pending, position = view[n:], pending[n:], position + n
    leftover = len(pending) or len(next(actual_chunks, b""))
    return position if leftover else None
