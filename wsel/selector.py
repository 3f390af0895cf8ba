"""The selector: one Selection per axis (and layer), reused by every tensor dim that carries the axis.

Consistency (the paper's finding that matters most) holds by construction: a dim's selection is composed
from its axes' selections, each chosen once. Attention is structured: whole heads, query heads with their
GQA key/value group, RoPE pairs and frequencies kept (`rope_head_dim`); `flat` applies the element
strategy to whole attention dims by size, as the paper's code does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from wsel import select
from wsel.axes import DimLabel, axis_name, base_axis, compose, is_literal, kind_of, size_label, stack_of
from wsel.errors import PlanError
from wsel.options import Attention
from wsel.select import Selection
from wsel.strategies import ElementStrategy, top_indices


def rope_head_dim(teacher: int, student: int, rotary_fraction: float) -> Selection:
    """Dims kept inside each q/k head so that RoPE still pairs and rotates them as in the teacher.

    rotate_half pairs dim i with i + r/2 (r = rotary dims). Keeping every k-th pair (k = r / r')
    from 0 in both halves keeps the pairs together, and pair i' of the student then has the
    teacher's frequency theta^(-2 i' k / r) = theta^(-2 i' / r'), with the same rope_theta.
    Non-rotary dims (partial rotary) are selected by the paper's rule.
    """
    rotary_t, rotary_s = int(teacher * rotary_fraction), int(student * rotary_fraction)
    if not _rope_ok(teacher, student, rotary_fraction):
        working = [d for d in range(2, teacher + 1, 2) if _rope_ok(teacher, d, rotary_fraction)]
        raise PlanError(
            f"head_dim {teacher} → {student} cannot keep RoPE pairs and frequencies "
            f"(rotary dims {rotary_t} → {rotary_s}); head_dim sizes that work: {', '.join(map(str, working))}"
        )
    step = rotary_t // rotary_s
    half_t, half_s = rotary_t // 2, rotary_s // 2
    first = np.arange(half_s) * step  # [rotary_s / 2]
    kept = [first, half_t + first]
    if teacher > rotary_t:
        kept.append(rotary_t + select.uniform(teacher - rotary_t, student - rotary_s).indices())
    return select.from_indices(teacher, np.concatenate(kept), origin="rope")


def _rope_ok(teacher: int, student: int, fraction: float) -> bool:
    rt, rs = int(teacher * fraction), int(student * fraction)
    return rs > 0 and rs % 2 == 0 and rt % rs == 0 and (teacher - rt) >= (student - rs)


@dataclass
class AxisSelector:
    """Chooses one Selection per (axis, layer) and reuses it for every tensor that carries the axis."""

    teacher: dict[str, int]
    student: dict[str, int]
    rotary_fraction: float | None  # None: no RoPE in this architecture
    attention: Attention = "structured"
    elements: ElementStrategy = field(default_factory=ElementStrategy)
    chosen: dict[str, Selection] = field(default_factory=dict)  # axis name → Selection, for the report

    def axis(self, axis: str, layer: int | None) -> Selection:
        name = axis_name(axis, layer)
        if name not in self.chosen:
            self.chosen[name] = self._choose(axis, layer)
        return self.chosen[name]

    def _choose(self, axis: str, layer: int | None) -> Selection:
        name = axis_name(axis, layer)
        t, s = self.teacher[_size_key(axis)], self.student[_size_key(axis)]
        kind, stack = kind_of(axis), stack_of(axis)  # a stack's heads follow its own key/value heads
        if kind == "equal":
            return select.identity(t)
        if kind == "truncate":
            return Selection(t, 0, 1, s)
        if base_axis(axis) == "heads":
            return self._query_heads(stack, layer)
        unscored = self.elements.name == "magnitude" and name not in self.elements.scores
        if base_axis(axis) == "kv_heads" and unscored and self.teacher[stack + "heads"] == t:
            # multi-head attention stored per head (GPT-NeoX's heads*3*head_dim): no tensor labels kv_heads,
            # and each key/value head is its query head, ranked by the scores of `heads`
            return self.elements.choose(axis_name(stack + "heads", layer), t, s)
        if base_axis(axis) == "head_dim" and self.rotary_fraction is not None and s != t:
            return rope_head_dim(t, s, self.rotary_fraction)  # a structural constraint: no strategy applies
        return self.elements.choose(name, t, s)

    def _query_heads(self, stack: str, layer: int | None) -> Selection:
        """GQA: the kept key/value heads first, then within each kept group the query heads it serves (of one
        stack: `stack` is `` or a qualifier such as `text.`)."""
        heads_t = self.teacher[stack + "heads"]
        group_t = heads_t // self.teacher[stack + "kv_heads"]
        group_s = self.student[stack + "heads"] // self.student[stack + "kv_heads"]
        kv = self.axis(stack + "kv_heads", layer).indices()  # [student kv heads]
        name = axis_name(stack + "heads", layer)
        if self.elements.name == "magnitude":  # the best-scoring query heads of each kept group
            scores = self.elements.score(name, heads_t).reshape(-1, group_t)  # [kv heads, group]
            within = np.stack([top_indices(scores[g], group_s) for g in kv])  # [student kv heads, group_s]
        else:  # one pattern for every group
            within = self.elements.choose(f"{name}/group", group_t, group_s).indices()[None, :]
        kept = (kv[:, None] * group_t + within).ravel()
        return select.from_indices(heads_t, kept, origin=self.elements.name)

    def dim(self, dim: DimLabel, layer: int | None) -> tuple[Selection, str, DimLabel]:
        """The Selection over one tensor dim (an architecture dim expression), how it was made (for people)
        and its concrete axis label."""
        t, s = dim.size(self.teacher), dim.size(self.student)
        axes = dim.axes
        # `flat` knows dims by size; vocabularies, positions and experts keep their axes (experts: per-expert
        # tensors follow the `experts[i]` axis, so the router's rows must too)
        protected = any(kind_of(a) in ("equal", "truncate", "experts") for a in axes)
        if self.attention == "flat" and not protected:
            name = size_label(t, s)  # the paper's rule knows dims by size only
            if name not in self.chosen:
                self.chosen[name] = self.elements.choose(name, t, s)
            return self.chosen[name], self.chosen[name].describe(), DimLabel.single(name)
        for axis in axes:
            self.axis(axis, layer)
        label = dim.at_layer(layer)
        selection = compose(label, self.chosen, t)
        if len(dim.blocks) == 1 and len(dim.blocks[0]) == 1:
            return selection, selection.describe(), label
        texts = [
            "copy" if len(block) == 1 and is_literal(block[0]) else "×".join(self._factor_text(a, layer) for a in block)
            for block in dim.blocks
        ]
        return selection, " | ".join(texts), label

    def _factor_text(self, factor: str, layer: int | None) -> str:
        """`heads[0:8:2]`, or a literal inside a product as it is (`3`: every one of its indices kept)."""
        return factor if is_literal(factor) else f"{factor}[{self.axis(factor, layer).describe()}]"


def _size_key(axis: str) -> str:
    return stack_of(axis) + "head_dim" if base_axis(axis) == "v_head_dim" else axis
