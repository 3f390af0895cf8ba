"""Data-free importance scores for the `magnitude` element strategy, computed streaming.

For every axis, the score of index j is the sum of the squares of every teacher weight that the
student will read and that sits at index j of that axis, over all tensors carrying the axis:
- the residual stream (`hidden`, or `384→192` on the generic path) aggregates every tensor that
  reads or writes it: embeddings, projections in and out, norms and biases;
- an MLP neuron (`mlp[i]`) aggregates the rows that produce it and the columns that consume it;
- a head (`heads[i]`, `kv_heads[i]`) aggregates its rows of q (or k and v) and its columns of o,
  summed over the dims of the head; a dim made of blocks (`heads*head_dim`) is split accordingly;
- an expert (`experts[i]`) aggregates its router row and every weight of the expert; the experts of a
  layer all feed its `mlp[i]`. Experts stored one tensor each (`experts.{expert}.w1.weight`) are scored over
  every teacher expert, not only those the first plan kept, so that a checkpoint scores as its fused form
  (`experts.gate_up_proj` [experts, ...]) does.
Teacher tensors are read once, in row blocks, within the same memory bound as selection.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from wsel.arch import Architecture, Template, all_architectures
from wsel.axes import DimLabel, group_label, is_group, is_literal, literal_size
from wsel.checkpoint.dtypes import DTYPES
from wsel.checkpoint.header import TensorInfo
from wsel.checkpoint.reader import DEFAULT_BLOCK_BYTES, TensorReader
from wsel.plan.model import Plan
from wsel.select import Selection, identity


def compute_scores(plan: Plan, block_bytes: int = DEFAULT_BLOCK_BYTES) -> dict[str, np.ndarray]:
    """Scores per axis label of `plan` (a plan made with any strategy: only its labels are used)."""
    sizes = {name: sel.teacher_size for name, sel in plan.axes.items()}
    scores: dict[str, np.ndarray] = {}
    experts = _ExpertTensors.of(plan)
    with TensorReader(block_bytes) as reader:
        for tensor in plan.written:
            wanted = [d for d, sel in enumerate(tensor.selections) if not sel.is_identity]
            if not wanted or not _is_float(tensor.source) or experts.match(tensor.source.name) is not None:
                continue
            per_dim = _squares_per_index(reader, tensor.source, wanted)
            for dim, values in per_dim.items():
                _add(scores, split_label(tensor.axes[dim], values, sizes))
        for info in plan.teacher.tensors.values():
            found = experts.match(info.name)
            if found is None or not _is_float(info) or not experts.students_of(found[1]):
                continue  # not an expert's weight, or of a layer no student layer reads
            template, layer, expert = found
            per_dim = _squares_per_index(reader, info, list(range(len(info.shape))))
            for student_layer in experts.students_of(layer):
                for dim, values in per_dim.items():
                    _add(scores, split_label(template.dims[dim].at_layer(student_layer), values, sizes))
                total = np.zeros(sizes[f"experts[{student_layer}]"])  # [experts]: this expert's whole weight
                total[expert] = per_dim[0].sum() if per_dim else 0.0
                _add(scores, [(f"experts[{student_layer}]", total)])
    return scores


def _is_float(info: TensorInfo) -> bool:
    return DTYPES[info.dtype].kind in ("float", "complex")


def _add(scores: dict[str, np.ndarray], parts: list[tuple[str, np.ndarray]]) -> None:
    for axis, axis_scores in parts:
        if axis in scores:
            scores[axis] += axis_scores
        else:
            scores[axis] = axis_scores.copy()


class _ExpertTensors:
    """The teacher tensors stored one per expert (templates with `{expert}`) of a plan's architecture, and the
    student layers that read each teacher layer."""

    def __init__(self, arch: Architecture | None, plan: Plan) -> None:
        templates = [t for t in arch.templates if t.per_expert] if arch is not None else []
        self.regexes = [(t, t.regex(prefix)) for t in templates for prefix in arch.prefixes] if arch else []
        self.layers: dict[int, list[int]] = {}  # teacher layer → the student layers that read it
        for layer_map in plan.layer_maps if self.regexes else ():
            for student, teacher in layer_map.mapping:
                self.layers.setdefault(teacher, []).append(student)

    @classmethod
    def of(cls, plan: Plan) -> _ExpertTensors:
        return cls(next((a for a in all_architectures() if a.name == plan.path), None), plan)

    def match(self, name: str) -> tuple[Template, int, int] | None:
        """(template, teacher layer, expert) of a per-expert teacher tensor; None for any other."""
        for template, regex in self.regexes:
            m = regex.match(name)
            if m is not None:
                return template, int(m.group("layer")), int(m.group("expert"))
        return None

    def students_of(self, layer: int) -> list[int]:
        return self.layers.get(layer, [])


def _squares_per_index(reader: TensorReader, info: TensorInfo, dims: list[int]) -> dict[int, np.ndarray]:
    """For each dim in `dims`: the sum of squares of the tensor's elements at each index of that dim."""
    totals = {d: np.zeros(info.shape[d], dtype=np.float64) for d in dims}
    row = 0
    for block in _row_blocks(reader, info):  # [rows, *shape[1:]] float64
        for d in dims:
            other = tuple(a for a in range(block.ndim) if a != d)
            sums = np.square(block).sum(axis=other)
            if d == 0:
                totals[0][row : row + block.shape[0]] += sums
            else:
                totals[d] += sums
        row += block.shape[0]
    return totals


def _row_blocks(reader: TensorReader, info: TensorInfo) -> Iterator[np.ndarray]:
    """The tensor as float64 blocks of whole rows ([rows, *shape[1:]]), at most about one buffer each."""
    import torch  # deferred: decoding bf16 / f8 needs torch; only the magnitude strategy pays for it

    dtype = getattr(torch, DTYPES[info.dtype].torch_name)
    row_bytes = info.nbytes // info.shape[0] if info.shape and info.shape[0] else 0
    if row_bytes == 0:
        return
    rows_per_block = max(1, reader.block_bytes // row_bytes)
    for first in range(0, info.shape[0], rows_per_block):
        rows = min(rows_per_block, info.shape[0] - first)
        # through the reader's selection, so that a tensor stored otherwise (GGUF blocks, a view) is decoded
        rows_of_block = [Selection(info.shape[0], first, 1, rows), *(identity(d) for d in info.shape[1:])]
        data = b"".join(bytes(chunk) for chunk in reader.iter_selected(info, rows_of_block))
        values = torch.frombuffer(bytearray(data), dtype=dtype)
        values = values.abs() if values.is_complex() else values
        yield values.to(torch.float64).numpy().reshape((rows, *info.shape[1:]))


def split_label(label: DimLabel, values: np.ndarray, sizes: dict[str, int]) -> list[tuple[str, np.ndarray]]:
    """Distribute one dim's per-index scores over the axes its label names.

    `heads[0]*head_dim | kv_heads[0]*head_dim`: split into blocks, reshape each block to
    [heads, head_dim] and sum over the other factor; a group (`heads[0]*(nope_dim | head_dim)`) gets its sums
    split in turn. Literals and copied axes get nothing.
    """
    result: list[tuple[str, np.ndarray]] = []
    offset = 0
    for factors in label.blocks:
        shape = [_factor_size(f, sizes) for f in factors]
        size = math.prod(shape)
        part = values[offset : offset + size].reshape(shape)  # [factor sizes...]
        offset += size
        for i, factor in enumerate(factors):
            other = tuple(a for a in range(len(factors)) if a != i)
            if is_group(factor):
                result += split_label(group_label(factor), part.sum(axis=other) if other else part, sizes)
            elif factor in sizes and not is_literal(factor):
                result.append((factor, part.sum(axis=other) if other else part))
    return result


def _factor_size(factor: str, sizes: dict[str, int]) -> int:
    """The teacher size of a factor: a recorded axis, or a size the factor states (`384`, `384→192`)."""
    if factor in sizes:
        return sizes[factor]
    if is_group(factor):
        inner = group_label(factor)
        return inner.size({f: _factor_size(f, sizes) for f in inner.axes})
    size = literal_size(factor)
    if size is None:
        raise ValueError(f"axis {factor!r} has no recorded size")
    return size
