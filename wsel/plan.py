"""The Plan: every decision about the student, made before any tensor data is read.

`build_plan` is pure (headers in, a printable value out), so `inspect`, `init`, the report and
the tests all share one path.
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from wsel import namesets, select
from wsel.axes import AXIS_KINDS, size_label
from wsel.checkpoint.dtypes import DTYPES, byte_length, element_size
from wsel.checkpoint.header import TensorInfo
from wsel.checkpoint.index import CheckpointIndex
from wsel.errors import PlanError
from wsel.layers import LayerMap, find_layer, make_layer_map
from wsel.select import Selection
from wsel.spec import StudentSpec, StudentTensor
from wsel.strategies import ElementStrategy, group_strategy

SELECT, COPY, EXCLUDE = "select", "copy", "exclude"
MAX_SELECTED_DIMS = 63  # the reader views a tensor as numpy [dims..., element bytes]: 64 dims at most

# Names whose non-last dims index tokens or positions: uniform subsampling of those breaks the model.
_EMBEDDING_NAME = re.compile(r"(?<!patch_)embed|wte|wpe", re.IGNORECASE)  # lookup tables, not patch_embed convs
_ROW_INDEXED_NAME = re.compile(
    r"embed_tokens|word_embed|tok_embed|embed_in|embed_out|wte|wpe|pos_embed|position|vocab|lm_head|token_type",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class PlanOptions:
    exclude: tuple[str, ...] = ()  # globs of student tensors left to the student's own init (paper: `head*`)
    dtype: str | None = None  # cast floating tensors to this safetensors dtype; None keeps the teacher's bytes
    elements: str = "uniform"  # element strategy; the paper's rule, bit-exact
    layers: str = "first"  # layer strategy; the paper's first-N
    attention: str = "structured"  # with architecture data: whole heads, GQA groups, RoPE pairs; or "flat"
    seed: int = 0  # for the random element strategy
    rescale: bool = False  # multiply weights whose input dim shrank by sqrt(teacher / student) (weight subcloning)


@dataclass(frozen=True)
class TensorPlan:
    """The decision for one student tensor."""

    name: str
    shape: tuple[int, ...]
    dtype: str  # dtype written
    action: str  # SELECT | COPY | EXCLUDE
    source: TensorInfo | None = None  # the teacher tensor read (None when excluded)
    selections: tuple[Selection, ...] = ()  # one per dim, over the teacher's dim
    axes: tuple[str, ...] = ()  # the logical axis (or axis expression) of each dim
    texts: tuple[str, ...] = ()  # how each dim was selected, for people: `0:384:2`, `heads[0:8:2]×head_dim[copy]`
    reason: str = ""  # why excluded
    scale: float | None = None  # --rescale: the factor sqrt(T_in / S_in) applied to the values

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
    path: str = "generic"  # "generic" (names and sizes) or the architecture data used, e.g. "llama"
    axes: dict[str, Selection] = field(default_factory=dict)  # every axis's one Selection
    student_config: dict[str, Any] | None = None  # config.json to write beside a folder output
    copy_files: tuple[Path, ...] = ()  # teacher-folder files copied beside a folder output (tokenizer, ...)

    @property
    def written(self) -> tuple[TensorPlan, ...]:
        return tuple(t for t in self.tensors if t.action != EXCLUDE)

    @property
    def excluded(self) -> tuple[TensorPlan, ...]:
        return tuple(t for t in self.tensors if t.action == EXCLUDE)


def element_strategy(options: PlanOptions, scores: dict[str, np.ndarray] | None) -> ElementStrategy:
    return ElementStrategy(options.elements, options.seed, scores or {})


def build_plan(
    teacher: CheckpointIndex,
    student: StudentSpec,
    options: PlanOptions | None = None,
    scores: dict[str, np.ndarray] | None = None,
) -> Plan:
    """Map every student tensor to its teacher source and a Selection per dim. Raises PlanError.

    `scores` (axis label → importance per teacher index) feed the magnitude strategy."""
    options = options or PlanOptions()
    elements = element_strategy(options, scores)
    excluded = [t for t in student.tensors if is_excluded(t.name, options.exclude)]
    kept = [t for t in student.tensors if not is_excluded(t.name, options.exclude)]
    layer_maps = _layer_maps(teacher, kept, options)
    by_group = {m.group: m for m in layer_maps}

    warnings: list[str] = []
    name_set = namesets.detect(teacher)
    planned = []
    for tensor in kept:
        source = _source(teacher, tensor, by_group)
        # `--attention flat` keeps the paper's per-dim rule even where a name set knows the blocks.
        labels = name_set.dims(tensor.name) if name_set is not None and options.attention != "flat" else None
        if labels is not None and len(labels) == len(source.shape):
            planned.append(_plan_labelled(tensor, source, labels, options, elements, warnings))
        else:
            planned.append(_plan_generic(tensor, source, options, elements, warnings))
    axes: dict[str, Selection] = {}
    for p in planned:
        for label, sel in zip(p.axes, p.selections, strict=True):
            for axis, block_sel in _axis_parts(label, sel):
                if axis in axes and (axes[axis].teacher_size, axes[axis].size) != (
                    block_sel.teacher_size,
                    block_sel.size,
                ):
                    raise PlanError(
                        f"student tensor {p.name!r}: axis {axis} is {block_sel.size} wide here but "
                        f"{axes[axis].size} in another tensor; the student config disagrees with itself"
                    )
                axes[axis] = block_sel
    path = name_set.name if name_set is not None else "generic"
    plan = Plan(teacher, student, options, order(teacher, planned, excluded), layer_maps, tuple(warnings), path=path)
    return replace(plan, axes=dict(sorted(axes.items())))


def _axis_parts(label: str, sel: Selection) -> list[tuple[str, Selection]]:
    """The axis selections inside one dim: a dim of n equal blocks `attn | attn | attn` holds n copies of one."""
    blocks = [b.strip() for b in label.split("|")]
    if any(b.isdigit() or AXIS_KINDS.get(namesets.base_axis(b)) == "equal" for b in blocks):
        return []  # equal axes are copied whole: nothing to keep consistent (and `kernel` varies by tensor)
    if len(blocks) == 1:
        return [(label, sel)]
    block_size = sel.teacher_size // len(blocks)
    first = sel.indices()[: sel.size // len(blocks)]
    return [(blocks[0], select.from_indices(block_size, first))] if len(set(blocks)) == 1 else []


def order(teacher: CheckpointIndex, planned: list[TensorPlan], excluded: list[StudentTensor]) -> tuple[TensorPlan, ...]:
    """Written tensors in the teacher's storage order (so reads go front to back), then the excluded ones."""
    planned = sorted(planned, key=lambda p: (*_storage_order(teacher, p.source), p.name))
    return tuple(planned) + tuple(
        TensorPlan(t.name, t.shape, t.dtype or "", EXCLUDE, reason="--exclude") for t in excluded
    )


def is_excluded(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def _layer_maps(teacher: CheckpointIndex, student: list[StudentTensor], options: PlanOptions) -> tuple[LayerMap, ...]:
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
    groups = sorted(g for g in student_layers if teacher_layers[g])  # others fail per tensor, named
    maps = []
    for group in groups:
        if len(student_layers[group]) > len(teacher_layers[group]):
            raise PlanError(
                f"student has {len(student_layers[group])} layers in {group!r} but the teacher {teacher.path} has "
                f"{len(teacher_layers[group])}; a student cannot be deeper than its teacher"
            )
        strategy = group_strategy(options.layers, groups, group)
        maps.append(make_layer_map(group, sorted(student_layers[group]), sorted(teacher_layers[group]), strategy))
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


def _plan_generic(
    student: StudentTensor, source: TensorInfo, options: PlanOptions, elements: ElementStrategy, warnings: list[str]
) -> TensorPlan:
    """The element strategy (the paper's rule by default) on every dim; dims are labelled by their sizes."""
    where = _where(student.name, student.shape, source)
    if len(student.shape) != len(source.shape):
        raise PlanError(f"{where}: the number of dims differs; fix the student config or --exclude it")
    for dim, (s, t) in enumerate(zip(student.shape, source.shape, strict=True)):
        if s > t:
            raise PlanError(
                f"{where}: dim {dim} is {s} in the student but {t} in the teacher; "
                "a student dim cannot be larger than the teacher's"
            )
    pairs = list(zip(student.shape, source.shape, strict=True))
    axes = tuple(size_label(t, s) for s, t in pairs)
    if source.numel == 0:  # nothing to select: leading slices, never an index list (dims may be huge)
        selections = tuple(Selection(t, 0, 1, s) for s, t in pairs)
    else:
        selections = tuple(elements.choose(label, t, s) for label, (s, t) in zip(axes, pairs, strict=True))
    if _ROW_INDEXED_NAME.search(student.name):
        for dim, (s, t) in enumerate(pairs):
            if s < t and dim < len(source.shape) - 1:
                warnings.append(
                    f"student tensor {student.name!r}: dim {dim} ({t}→{s}) looks like a vocabulary or position "
                    "axis; uniform subsampling breaks token ids and positions (keep it equal or --exclude it)"
                )
    return tensor_plan(
        student, source, selections, axes, options, warnings, input_dim=generic_input_dim(student.name, student.shape)
    )


def _plan_labelled(
    student: StudentTensor,
    source: TensorInfo,
    labels: tuple[tuple[str, ...], ...],
    options: PlanOptions,
    elements: ElementStrategy,
    warnings: list[str],
) -> TensorPlan:
    """A name-set tensor: each dim is split into its blocks (q|k|v), each block selected on its own
    (the paper's rule for widths; equal axes copied; positions truncated)."""
    where = _where(student.name, student.shape, source)
    selections, axes, texts = [], [], []
    for dim, (blocks, s, t) in enumerate(zip(labels, student.shape, source.shape, strict=True)):
        label = " | ".join(blocks)
        n = len(blocks)
        if t % n or s % n:
            raise PlanError(f"{where}: dim {dim} ({label}) holds {n} blocks, so {t} and {s} must be multiples of {n}")
        block_t, block_s = t // n, s // n
        kinds = {"equal" if b.isdigit() else AXIS_KINDS[namesets.base_axis(b)] for b in blocks}
        if block_s > block_t:
            raise PlanError(
                f"{where}: dim {dim} ({label}) is {s} in the student but {t} in the teacher; "
                "a student dim cannot be larger than the teacher's"
            )
        if "equal" in kinds and block_s != block_t:
            raise PlanError(f"{where}: dim {dim} ({label}) is never subsampled; keep it at {t}")
        if "truncate" in kinds:
            kept = [Selection(block_t, 0, 1, block_s)] * n
        else:
            kept = [elements.choose(b, block_t, block_s) for b in blocks]
        sel = select.from_indices(t, np.concatenate([b * block_t + k.indices() for b, k in enumerate(kept)]))
        selections.append(sel)
        axes.append(label)
        texts.append(
            sel.describe() if n == 1 else " | ".join(f"{b}[{k.describe()}]" for b, k in zip(blocks, kept, strict=True))
        )
    input_dim = generic_input_dim(student.name, student.shape)
    return tensor_plan(student, source, tuple(selections), tuple(axes), options, warnings, tuple(texts), input_dim)


def tensor_plan(
    student: StudentTensor,
    source: TensorInfo,
    selections: tuple[Selection, ...],
    axes: tuple[str, ...],
    options: PlanOptions,
    warnings: list[str],
    texts: tuple[str, ...] | None = None,
    input_dim: int | None = None,
) -> TensorPlan:
    """Checks shared by every path (dtype kinds, packed dtypes, casting, rescaling), then the TensorPlan.

    `input_dim` is the dim a weight multiplies its input along; with --rescale, a weight whose input
    dim shrank from T to S is multiplied by sqrt(T / S), so that the variance of its outputs (a sum of
    T products of independent terms) is kept (weight subcloning, Samragh et al. 2023)."""
    where = _where(student.name, student.shape, source)
    kind = DTYPES[source.dtype].kind
    if kind in ("int", "bool") and not all(s.start == 0 and s.step == 1 and s.explicit is None for s in selections):
        raise PlanError(
            f"{where}: {source.dtype} tensors hold ids or flags and are never subsampled; "
            f"give the student the teacher's shape or --exclude it"
        )
    packed = element_size(source.dtype) is None
    if student.shape != source.shape and packed:
        raise PlanError(f"{where}: packed {source.dtype} elements cannot be selected; --exclude it")
    if len(source.shape) > MAX_SELECTED_DIMS and not all(s.is_identity for s in selections):
        raise PlanError(
            f"{where}: {len(source.shape)} dims; at most {MAX_SELECTED_DIMS} can be selected (numpy's limit)"
        )
    out_dtype = source.dtype
    if options.dtype is not None and kind == "float" and not packed and source.dtype != options.dtype:
        out_dtype = options.dtype
    if student.dtype is not None and student.dtype != out_dtype:
        warnings.append(
            f"student tensor {student.name!r}: template dtype {student.dtype} differs from the {out_dtype} "
            "written (wsel keeps the teacher's bytes unless --dtype is given)"
        )
    scale = None
    if options.rescale and input_dim is not None and kind == "float" and not packed:
        shrunk_from, shrunk_to = source.shape[input_dim], student.shape[input_dim]
        if shrunk_to < shrunk_from:
            scale = math.sqrt(shrunk_from / shrunk_to)
    action = COPY if all(s.is_identity for s in selections) and scale is None else SELECT
    texts = texts if texts is not None else tuple(s.describe() for s in selections)
    return TensorPlan(student.name, student.shape, out_dtype, action, source, selections, axes, texts, scale=scale)


def generic_input_dim(name: str, shape: tuple[int, ...]) -> int | None:
    """Without architecture data: dim 1 of a `*weight` with 2+ dims ([out, in] Linear, [out, in, k, k]
    conv), unless its name says it is an embedding table."""
    if len(shape) < 2 or not name.endswith("weight") or _EMBEDDING_NAME.search(name):
        return None
    return 1


def _where(name: str, shape: tuple[int, ...], source: TensorInfo) -> str:
    return f"student tensor {name!r} {list(shape)} from teacher {source.name!r} {list(source.shape)}"


def _storage_order(teacher: CheckpointIndex, source: TensorInfo | None) -> tuple[int, int, int]:
    assert source is not None
    return teacher.files.index(source.file), source.start, source.end
