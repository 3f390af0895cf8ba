"""The selector: one Selection per axis (and layer), reused by every tensor dim that carries the axis.

Consistency (the paper's finding that matters most) holds by construction: a dim's selection is composed
from its axes' selections, each chosen once. Attention is structured: whole heads, query heads with their
GQA key/value group, RoPE pairs and frequencies kept (`rope_head_dim`); `flat` applies the element
strategy to whole attention dims by size, as the paper's code does. Experts routed in groups (DeepSeek's
`n_group`) stay within their group as query heads stay with theirs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from wsel import select
from wsel.axes import (
    DimLabel,
    axis_name,
    base_axis,
    compose,
    group_label,
    is_group,
    is_literal,
    kind_of,
    size_label,
    stack_of,
)
from wsel.errors import PlanError
from wsel.options import Attention
from wsel.select import Selection
from wsel.strategies import ElementStrategy, top_indices

# axes whose members come in groups kept whole or not at all: members → groups, and back
MEMBER_GROUPS = {"heads": "kv_heads", "experts": "expert_groups"}
GROUP_MEMBERS = {groups: members for members, groups in MEMBER_GROUPS.items()}


def rope_head_dim(teacher: int, student: int, rotary_fraction: float, interleaved: bool = False) -> Selection:
    """Dims kept inside each q/k head so that RoPE still pairs and rotates them as in the teacher.

    rotate_half pairs dim i with i + r/2 (r = rotary dims); interleaved RoPE (DeepSeek, GPT-J) pairs
    dims 2i and 2i+1. Keeping every k-th pair (k = r / r') from 0 keeps the pairs together, and pair i'
    of the student then has the teacher's frequency theta^(-2 i' k / r) = theta^(-2 i' / r'), with
    the same rope_theta. Non-rotary dims (partial rotary) are selected by the paper's rule.
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
    pairs = np.arange(half_s) * step  # [rotary_s / 2]: the teacher pairs kept
    if interleaved:
        kept = [np.stack([2 * pairs, 2 * pairs + 1], axis=1).ravel()]  # [rotary_s]: 2p, 2p+1 for each pair p
    else:
        kept = [pairs, half_t + pairs]
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
    rope_interleaved: bool = False  # RoPE pairs dims 2i, 2i+1 (else i, i + r/2)
    chosen: dict[str, Selection] = field(default_factory=dict)  # axis name → Selection, for the report

    def axis(self, axis: str, layer: int | None) -> Selection:
        name = axis_name(axis, layer)
        if name not in self.chosen:
            self.chosen[name] = self._choose(axis, layer)
        return self.chosen[name]

    def _choose(self, axis: str, layer: int | None) -> Selection:
        name = axis_name(axis, layer)
        t, s = self.teacher[axis], self.student[axis]
        kind, stack, base = kind_of(axis), stack_of(axis), base_axis(axis)  # a stack's heads follow its own groups
        if kind == "equal":
            return select.identity(t)
        if kind == "truncate":
            return Selection(t, 0, 1, s)
        if base in MEMBER_GROUPS and all(
            stack + MEMBER_GROUPS[base] in sizes for sizes in (self.teacher, self.student)
        ):
            return self._within_groups(stack + base, stack + MEMBER_GROUPS[base], layer)
        unscored = self.elements.name == "magnitude" and name not in self.elements.scores
        if base in GROUP_MEMBERS and s != t and unscored:
            # no tensor carries these groups (GPT-NeoX's key/value heads, one per query head, in heads*3*head_dim;
            # DeepSeek's expert groups): a group scores what its members score
            members = stack + GROUP_MEMBERS[base]
            scores = self.elements.score(axis_name(members, layer), self.teacher[members]).reshape(t, -1)
            return select.from_indices(t, top_indices(scores.sum(axis=1), s), "magnitude")
        if base == "head_dim" and self.rotary_fraction is not None and s != t:
            # a structural constraint: no strategy applies
            return rope_head_dim(t, s, self.rotary_fraction, self.rope_interleaved)
        return self.elements.choose(name, t, s)

    def _within_groups(self, members: str, groups: str, layer: int | None) -> Selection:
        """Members kept inside whole groups (GQA's query heads with the key/value head they share, experts
        with their routing group): the kept groups first, then within each kept group its kept members."""
        members_t = self.teacher[members]
        per_group_t = members_t // self.teacher[groups]
        per_group_s = self.student[members] // self.student[groups]
        kept_groups = self.axis(groups, layer).indices()  # [student groups]
        name = axis_name(members, layer)
        if self.elements.name == "magnitude" and per_group_s < per_group_t:  # the best-scoring of each group
            scores = self.elements.score(name, members_t).reshape(-1, per_group_t)  # [groups, per group]
            within = np.stack([top_indices(scores[g], per_group_s) for g in kept_groups])  # [groups_s, per_group_s]
        else:  # one pattern for every group
            within = self.elements.choose(f"{name}/group", per_group_t, per_group_s).indices()[None, :]
        kept = (kept_groups[:, None] * per_group_t + within).ravel()
        return select.from_indices(members_t, kept, origin=self.elements.name)

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
        return selection, self._text(dim, layer), label

    def _text(self, dim: DimLabel, layer: int | None) -> str:
        """`heads[0:8:2]×head_dim[:]`, blocks side by side (`copy` for a literal block), groups in parentheses."""
        texts = [
            "copy" if len(block) == 1 and is_literal(block[0]) else "×".join(self._factor_text(a, layer) for a in block)
            for block in dim.blocks
        ]
        return " | ".join(texts)

    def _factor_text(self, factor: str, layer: int | None) -> str:
        """`heads[0:8:2]`, a group as `(nope_dim[...] | head_dim[...])`, or a literal inside a product as it is
        (`3`: every one of its indices kept)."""
        if is_group(factor):
            return f"({self._text(group_label(factor), layer)})"
        return factor if is_literal(factor) else f"{factor}[{self.axis(factor, layer).describe()}]"
