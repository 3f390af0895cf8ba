"""The generic path: students given tensor by tensor (a shape manifest, a template's header).

Each student tensor reads the teacher tensor of the same name (its layer index remapped by the layer
strategy). Dims are known by their sizes (`384→192`) and take the element strategy, the paper's rule by
default, as in the paper's code. When the teacher's names match a name set (timm ViT, ConvNeXt), dims
get semantic labels instead and fused q|k|v blocks are selected block by block.
"""

from __future__ import annotations

import dataclasses
import re
from collections import defaultdict

import numpy as np

from wsel import select
from wsel.arch import NameSet, detect_name_set
from wsel.axes import DimLabel, axis_kind, is_literal, linear_and_1x1_conv, size_label
from wsel.checkpoint.header import TensorInfo
from wsel.checkpoint.index import CheckpointIndex
from wsel.errors import PlanError
from wsel.hffolder import FolderFiles
from wsel.layers import LayerMap, find_layer, group_strategy, make_layer_map
from wsel.options import PlanOptions
from wsel.plan.base import Planner, describe
from wsel.plan.model import Plan, WrittenTensor
from wsel.select import Selection
from wsel.spec import Student, StudentTensor

# Names whose non-last dims index tokens or positions: uniform subsampling of those breaks the model.
_EMBEDDING_NAME = re.compile(r"(?<!patch_)embed|wte|wpe", re.IGNORECASE)  # lookup tables, not patch_embed convs
_ROW_INDEXED_NAME = re.compile(
    r"embed_tokens|word_embed|tok_embed|embed_in|embed_out|wte|wpe|pos_embed|position|vocab|lm_head|token_type",
    re.IGNORECASE,
)


class GenericPlanner(Planner):
    def __init__(
        self, teacher: CheckpointIndex, options: PlanOptions, scores: dict[str, np.ndarray] | None = None
    ) -> None:
        super().__init__(teacher, options, scores)
        self.name_set: NameSet | None = detect_name_set(teacher.tensors)

    def plan(
        self,
        student: Student,
        tensors: tuple[StudentTensor, ...],
        folder_files: FolderFiles | None = None,
        notes: tuple[str, ...] = (),
    ) -> Plan:
        """The Plan for `tensors` (the student's, as given or derived from its config); `notes` are warnings
        that come first in the report. Raises PlanError."""
        excluded = [t for t in tensors if self.is_excluded(t.name)]
        kept = [t for t in tensors if not self.is_excluded(t.name)]
        layer_maps = self._layer_maps(kept)
        by_group = {m.group: m for m in layer_maps}
        written = []
        for tensor in kept:
            source = self._source(tensor, by_group)
            planned = in_teacher_form(tensor, source)  # a Linear student of a 1x1 conv teacher, or the reverse
            # `--attention flat` keeps the paper's per-dim rule even where a name set knows the blocks.
            labels = self.name_set.dims(tensor.name) if self.name_set and self.options.attention != "flat" else None
            if labels is not None and len(labels) == 2 and linear_and_1x1_conv(source.shape[:2], source.shape):
                labels += (DimLabel.single("1"), DimLabel.single("1"))  # a 1x1 conv teacher named as a Linear
            if labels is not None and len(labels) == len(source.shape):
                chosen = self._labelled(planned, source, labels)
            else:
                chosen = self._by_size(planned, source)
            written.append(dataclasses.replace(chosen, shape=tensor.shape) if planned is not tensor else chosen)
        return Plan(
            teacher=self.teacher,
            student=student,
            student_tensors=tensors,
            options=self.options,
            written=self.in_storage_order(written),
            excluded=tuple(self.exclusion(t) for t in excluded),
            layer_maps=layer_maps,
            axes=_axes(written),
            path=self.name_set.name if self.name_set is not None else "generic",
            warnings=(*notes, *self.warnings),
            folder_files=folder_files,
        )

    def _layer_maps(self, student: list[StudentTensor]) -> tuple[LayerMap, ...]:
        student_layers: dict[str, set[int]] = defaultdict(set)
        for t in student:
            ref = find_layer(t.name)
            if ref is not None:
                student_layers[ref.group].add(ref.index)
        teacher_layers: dict[str, set[int]] = defaultdict(set)
        for name in self.teacher.tensors:
            ref = find_layer(name)
            if ref is not None and ref.group in student_layers:
                teacher_layers[ref.group].add(ref.index)
        groups = sorted(g for g in student_layers if teacher_layers[g])  # others fail per tensor, named
        maps = []
        for group in groups:
            if len(student_layers[group]) > len(teacher_layers[group]):
                teacher, count = self.teacher.location, len(teacher_layers[group])
                raise PlanError(
                    f"student has {len(student_layers[group])} layers in {group!r} but the teacher {teacher} has "
                    f"{count}; a student cannot be deeper than its teacher"
                )
            strategy = group_strategy(self.options.layers, groups, group)
            maps.append(make_layer_map(group, sorted(student_layers[group]), sorted(teacher_layers[group]), strategy))
        return tuple(maps)

    def _source(self, student: StudentTensor, layer_maps: dict[str, LayerMap]) -> TensorInfo:
        name = student.name
        ref = find_layer(name)
        if ref is not None and ref.group in layer_maps:
            name = ref.with_index(layer_maps[ref.group].teacher_index(ref.index))
        source = self.teacher.tensors.get(name)
        if source is None:
            raise PlanError(
                f"student tensor {student.name!r} has no counterpart {name!r} in the teacher {self.teacher.location}; "
                f"pass --exclude '{student.name}' to leave it to the student's own init"
            )
        return source

    def _by_size(self, student: StudentTensor, source: TensorInfo) -> WrittenTensor:
        """The element strategy (the paper's rule by default) on every dim; dims are labelled by their sizes."""
        where = _check_dims(student, source)
        for dim, (s, t) in enumerate(zip(student.shape, source.shape, strict=True)):
            if s > t:
                raise PlanError(
                    f"{where}: dim {dim} is {s} in the student but {t} in the teacher; "
                    "a student dim cannot be larger than the teacher's"
                )
        pairs = list(zip(student.shape, source.shape, strict=True))
        names = [size_label(t, s) for s, t in pairs]
        if source.numel == 0:  # nothing to select: leading slices, never an index list (dims may be huge)
            selections = tuple(Selection(t, 0, 1, s) for s, t in pairs)
        else:
            selections = tuple(self.elements.choose(name, t, s) for name, (s, t) in zip(names, pairs, strict=True))
        if _ROW_INDEXED_NAME.search(student.name):
            for dim, (s, t) in enumerate(pairs):
                if s < t and dim < len(source.shape) - 1:
                    self.warnings.append(
                        f"student tensor {student.name!r}: dim {dim} ({t}→{s}) looks like a vocabulary or position "
                        "axis; uniform subsampling breaks token ids and positions (keep it equal or --exclude it)"
                    )
        axes = tuple(DimLabel.single(name) for name in names)
        return self.written(student, source, selections, axes, input_dim=_input_dim(student.name, student.shape))

    def _labelled(self, student: StudentTensor, source: TensorInfo, labels: tuple[DimLabel, ...]) -> WrittenTensor:
        """A name-set tensor: each dim is split into its blocks (q|k|v), each block selected on its own
        (the paper's rule for widths; equal axes copied; positions truncated)."""
        where = _check_dims(student, source)
        selections, texts = [], []
        for dim, (label, s, t) in enumerate(zip(labels, student.shape, source.shape, strict=True)):
            blocks = label.block_names
            n = len(blocks)
            if t % n or s % n:
                raise PlanError(
                    f"{where}: dim {dim} ({label}) holds {n} blocks, so {t} and {s} must be multiples of {n}"
                )
            block_t, block_s = t // n, s // n
            kinds = {"equal" if is_literal(b) else axis_kind(b) for b in blocks}
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
                kept = [self.elements.choose(b, block_t, block_s) for b in blocks]
            # block b's kept indices, shifted to where the block starts in the fused dim: [s]
            sel = select.from_indices(t, np.concatenate([b * block_t + k.indices() for b, k in enumerate(kept)]))
            selections.append(sel)
            texts.append(
                sel.describe()
                if n == 1
                else " | ".join(f"{b}[{k.describe()}]" for b, k in zip(blocks, kept, strict=True))
            )
        input_dim = _input_dim(student.name, student.shape)
        return self.written(student, source, tuple(selections), labels, tuple(texts), input_dim)


def in_teacher_form(student: StudentTensor, source: TensorInfo) -> StudentTensor:
    """The student tensor in its teacher's form when one is a Linear `[out, in]` and the other a 1x1 convolution
    `[out, in, 1, 1]`: the same weight (ConvNeXt's `conv_mlp`), selected on the shared dims and written in the
    student's form (the bytes are the same). Otherwise the student tensor as it is (a number of dims that
    differs otherwise is refused by `_check_dims`)."""
    if not linear_and_1x1_conv(student.shape, source.shape):
        return student
    return StudentTensor(student.name, student.shape[:2] + source.shape[2:], student.dtype)


def _check_dims(student: StudentTensor, source: TensorInfo) -> str:
    """Refuse a student tensor whose number of dims differs from its source's; how messages name the pair."""
    where = describe(student.name, student.shape, source)
    if len(student.shape) != len(source.shape):
        raise PlanError(f"{where}: the number of dims differs; fix the student config or --exclude it")
    return where


def _axes(written: list[WrittenTensor]) -> dict[str, Selection]:
    """Every axis's one Selection, checked to have one size wherever it appears."""
    axes: dict[str, Selection] = {}
    for t in written:
        for label, sel in zip(t.axes, t.selections, strict=True):
            for axis, block_sel in _axis_parts(label, sel):
                known = axes.get(axis)
                if known is not None and (known.teacher_size, known.size) != (block_sel.teacher_size, block_sel.size):
                    raise PlanError(
                        f"student tensor {t.name!r}: axis {axis} is {block_sel.size} wide here but "
                        f"{known.size} in another tensor; the student config disagrees with itself"
                    )
                axes[axis] = block_sel
    return dict(sorted(axes.items()))


def _axis_parts(label: DimLabel, sel: Selection) -> list[tuple[str, Selection]]:
    """The axis selections inside one dim: a dim of n equal blocks `attn | attn | attn` holds n copies of one."""
    blocks = label.block_names
    if any(is_literal(b) or axis_kind(b) == "equal" for b in blocks):
        return []  # equal axes are copied whole: nothing to keep consistent (and `kernel` varies by tensor)
    if len(blocks) == 1:
        return [(blocks[0], sel)]
    block_size = sel.teacher_size // len(blocks)
    first = sel.indices()[: sel.size // len(blocks)]  # the first block's kept indices: [s / blocks]
    return [(blocks[0], select.from_indices(block_size, first))] if len(set(blocks)) == 1 else []


def _input_dim(name: str, shape: tuple[int, ...]) -> int | None:
    """Without architecture data: dim 1 of a `*weight` with 2+ dims ([out, in] Linear, [out, in, k, k]
    conv), unless its name says it is an embedding table."""
    if len(shape) < 2 or not name.endswith("weight") or _EMBEDDING_NAME.search(name):
        return None
    return 1
