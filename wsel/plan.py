"""The Plan: every decision about the student, made before any tensor data is read.

`build_plan` is pure (headers in, a printable value out), so `inspect`, `init`, the report and
the tests all share one path.
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections import defaultdict
from dataclasses import dataclass, field

from wsel import select
from wsel.checkpoint.dtypes import DTYPES, byte_length, element_size
from wsel.checkpoint.header import TensorInfo
from wsel.checkpoint.index import CheckpointIndex
from wsel.errors import PlanError
from wsel.layers import LayerMap, find_layer, first_n
from wsel.select import Selection
from wsel.spec import StudentSpec, StudentTensor

SELECT, COPY, EXCLUDE = "select", "copy", "exclude"

# Names whose non-last dims index tokens or positions: uniform subsampling of those breaks the model.
_ROW_INDEXED_NAME = re.compile(r"embed|wte|wpe|pos|vocab|lm_head|token_type|cls_token", re.IGNORECASE)


@dataclass(frozen=True)
class PlanOptions:
    exclude: tuple[str, ...] = ()  # globs of student tensors left to the student's own init (paper: `head*`)
    dtype: str | None = None  # cast floating tensors to this safetensors dtype; None keeps the teacher's bytes
    elements: str = "uniform"  # element strategy; the paper's rule, bit-exact
    layers: str = "first"  # layer strategy; the paper's first-N


@dataclass(frozen=True)
class TensorPlan:
    """The decision for one student tensor."""

    name: str
    shape: tuple[int, ...]
    dtype: str  # dtype written
    action: str  # SELECT | COPY | EXCLUDE
    source: TensorInfo | None = None  # the teacher tensor read (None when excluded)
    selections: tuple[Selection, ...] = ()  # one per dim, over the teacher's dim
    axes: tuple[str, ...] = ()  # the logical axis of each dim
    reason: str = ""  # why excluded

    @property
    def nbytes(self) -> int:
        return byte_length(self.dtype, math.prod(self.shape)) if self.action != EXCLUDE else 0

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class Plan:
    teacher: CheckpointIndex
    student: StudentSpec
    options: PlanOptions
    tensors: tuple[TensorPlan, ...]  # written ones first, in teacher storage order; then excluded
    layer_maps: tuple[LayerMap, ...]
    warnings: tuple[str, ...] = field(default=())
    path: str = "generic"  # how dims were labelled: "generic" name matching (architecture data later)

    @property
    def written(self) -> tuple[TensorPlan, ...]:
        return tuple(t for t in self.tensors if t.action != EXCLUDE)

    @property
    def excluded(self) -> tuple[TensorPlan, ...]:
        return tuple(t for t in self.tensors if t.action == EXCLUDE)


def build_plan(teacher: CheckpointIndex, student: StudentSpec, options: PlanOptions | None = None) -> Plan:
    """Map every student tensor to its teacher source and a Selection per dim. Raises PlanError."""
    options = options or PlanOptions()
    excluded = [t for t in student.tensors if _is_excluded(t.name, options.exclude)]
    kept = [t for t in student.tensors if not _is_excluded(t.name, options.exclude)]
    layer_maps = _layer_maps(teacher, kept)
    by_group = {m.group: m for m in layer_maps}

    warnings: list[str] = []
    planned = [_plan_tensor(t, _source(teacher, t, by_group), options, warnings) for t in kept]
    planned.sort(key=lambda p: _storage_order(teacher, p.source))
    planned += [TensorPlan(t.name, t.shape, t.dtype or "", EXCLUDE, reason="--exclude") for t in excluded]
    return Plan(teacher, student, options, tuple(planned), layer_maps, tuple(warnings))


def _is_excluded(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def _layer_maps(teacher: CheckpointIndex, student: list[StudentTensor]) -> tuple[LayerMap, ...]:
    student_layers: dict[str, set[int]] = defaultdict(set)
    for t in student:
        ref = find_layer(t.name)
        if ref is not None:
            student_layers[ref.group].add(ref.index)
    teacher_layers: dict[str, set[int]] = defaultdict(set)
    for name in teacher.tensors:
        ref = find_layer(name)
        if ref is not None and ref.group in student_layers:
            teacher_layers[ref.group].add(ref.index)
    maps = []
    for group in sorted(student_layers):
        wanted, available = sorted(student_layers[group]), sorted(teacher_layers[group])
        if not available:
            continue  # each tensor of the group then fails with a named missing counterpart
        if len(wanted) > len(available):
            raise PlanError(
                f"student has {len(wanted)} layers in {group!r} but the teacher {teacher.path} has "
                f"{len(available)}; a student cannot be deeper than its teacher"
            )
        maps.append(first_n(group, wanted, available))
    return tuple(maps)


def _source(teacher: CheckpointIndex, student: StudentTensor, layer_maps: dict[str, LayerMap]) -> TensorInfo:
    name = student.name
    ref = find_layer(name)
    if ref is not None and ref.group in layer_maps:
        name = ref.with_index(layer_maps[ref.group].teacher_index(ref.index))
    source = teacher.tensors.get(name)
    if source is None:
        raise PlanError(
            f"student tensor {student.name!r} has no counterpart {name!r} in the teacher {teacher.path}; "
            f"pass --exclude '{student.name}' to leave it to the student's own init"
        )
    return source


def _plan_tensor(student: StudentTensor, source: TensorInfo, options: PlanOptions, warnings: list[str]) -> TensorPlan:
    where = f"student tensor {student.name!r} {list(student.shape)} from teacher {source.name!r} {list(source.shape)}"
    if len(student.shape) != len(source.shape):
        raise PlanError(f"{where}: the number of dims differs; fix the student config or --exclude it")
    for dim, (s, t) in enumerate(zip(student.shape, source.shape, strict=True)):
        if s > t:
            raise PlanError(
                f"{where}: dim {dim} is {s} in the student but {t} in the teacher; "
                "a student dim cannot be larger than the teacher's"
            )
    same_shape = student.shape == source.shape
    kind = DTYPES[source.dtype].kind
    if not same_shape and kind in ("int", "bool"):
        raise PlanError(
            f"{where}: {source.dtype} tensors hold ids or flags and are never subsampled; "
            f"give the student the teacher's shape or --exclude it"
        )
    if not same_shape and element_size(source.dtype) is None:
        raise PlanError(f"{where}: packed {source.dtype} elements cannot be selected; --exclude it")

    selections = tuple(select.uniform(t, s) for s, t in zip(student.shape, source.shape, strict=True))
    axes = tuple(f"{t}" if s == t else f"{t}→{s}" for s, t in zip(student.shape, source.shape, strict=True))
    out_dtype = source.dtype
    if options.dtype is not None and kind == "float" and source.dtype != options.dtype:
        out_dtype = options.dtype
    if student.dtype is not None and student.dtype != out_dtype:
        warnings.append(
            f"student tensor {student.name!r}: template dtype {student.dtype} differs from the {out_dtype} "
            "written (wsel keeps the teacher's bytes unless --dtype is given)"
        )
    if _ROW_INDEXED_NAME.search(student.name):
        for dim, (s, t) in enumerate(zip(student.shape, source.shape, strict=True)):
            if s < t and dim < len(source.shape) - 1:
                warnings.append(
                    f"student tensor {student.name!r}: dim {dim} ({t}→{s}) looks like a vocabulary or position "
                    "axis; uniform subsampling breaks token ids and positions (keep it equal or --exclude it)"
                )
    action = COPY if same_shape else SELECT
    return TensorPlan(student.name, student.shape, out_dtype, action, source, selections, axes)


def _storage_order(teacher: CheckpointIndex, source: TensorInfo | None) -> tuple[int, int]:
    assert source is not None
    return teacher.files.index(source.file), source.start
