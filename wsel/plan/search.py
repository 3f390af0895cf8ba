"""`--target-params`: valid student shapes near a parameter budget, for a teacher whose config.json names a
family with architecture data.

The rule (README, "Choosing the student by a budget"):
- keep the teacher's head_dim, its query heads per key/value head (the GQA group) and its intermediate/hidden
  ratio; hidden is a multiple of `multiple_of` (64), intermediate rounded to one too;
- heads = hidden / head_dim, rounded to whole groups (at least one); when that does not give back hidden and
  the family cannot state head_dim apart from hidden / heads (GPT-2, BERT), the width is skipped;
- every depth from 1 to the teacher's is a candidate for each width; the ones within 10% of the budget come
  first: those whose attention is as wide as hidden first, then the most balanced (depth shrunk by the same
  factor as the width); then the rest by distance to the budget;
- sizes fixed with `--set` are kept: only the free ones are searched.

Every candidate is checked by planning it exactly as `init` would (so it passes the same checks), and its
parameter count is the planned student's: every student tensor's elements, tied embeddings once. A width is
planned once, at one layer; counts at other depths follow (layers have equal shapes), and the listed
candidates are planned again at their own depth to confirm it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from wsel.errors import PlanError, WselError
from wsel.hfconfig import is_key
from wsel.layers import find_layer
from wsel.plan.model import Plan

WITHIN = 0.10  # a candidate this close to the budget is "near" it
_UNITS = {"": 1, "k": 10**3, "K": 10**3, "M": 10**6, "B": 10**9, "G": 10**9, "T": 10**12}
_BUDGET = re.compile(r"(?P<number>[0-9]+(?:\.[0-9]+)?)\s*(?P<unit>[kKMBGT%]?)")
SEARCHED = ("layers", "hidden", "heads", "kv_heads", "head_dim", "mlp")  # the axes a search sets


@dataclass(frozen=True)
class Candidate:
    """One student shape: its sizes by axis, the config keys that give them, its exact parameter count."""

    sizes: dict[str, int]
    sets: dict[str, int]  # config key → value: what `--set` would say
    parameters: int
    share: float  # of the teacher's parameters

    def to_dict(self) -> dict[str, Any]:
        return {**self.sizes, "parameters": self.parameters, "share": round(self.share, 6), "set": self.sets}


@dataclass(frozen=True)
class StudentSearch:
    budget: int
    teacher_parameters: int
    multiple_of: int
    candidates: tuple[Candidate, ...]  # best first
    note: str | None = None  # why no candidate is near the budget, when none is

    def to_dict(self) -> dict[str, Any]:
        return {
            "budget": self.budget,
            "teacher_parameters": self.teacher_parameters,
            "multiple_of": self.multiple_of,
            "candidates": [c.to_dict() for c in self.candidates],
            "note": self.note,
        }


def parse_budget(text: str, teacher_parameters: int) -> int:
    """`1.5B`, `500M`, `120k`, `25%` (of the teacher's parameters), or a plain count."""
    m = _BUDGET.fullmatch(text.strip())
    if m is None:
        raise PlanError(f"--target-params {text}: expected a count such as 1.5B, 500M, 120k, 25% or 1000000")
    number = float(m["number"])
    count = number / 100 * teacher_parameters if m["unit"] == "%" else number * _UNITS[m["unit"]]
    if not 0 < count <= teacher_parameters:
        raise PlanError(
            f"--target-params {text}: {round(count)} parameters is not between 1 and the teacher's "
            f"{teacher_parameters}; a student cannot be larger than its teacher"
        )
    return round(count)


def settable_keys(sizes: dict[str, tuple[str, ...]]) -> dict[str, str]:
    """The config key of each searched axis whose first expression is a key (a size the student can state);
    an axis only derived (GPT-2's head_dim, n_embd / n_head) is left to follow the others."""
    return {axis: sizes[axis][0] for axis in SEARCHED if axis in sizes and is_key(sizes[axis][0])}


def parameters(plan: Plan) -> int:
    return sum(math.prod(t.shape) for t in plan.student_tensors)


def search(
    plan_for: Callable[[dict[str, int]], Plan],
    keys: dict[str, str],
    teacher: dict[str, int],
    fixed: dict[str, int],
    budget: int,
    teacher_parameters: int,
    multiple_of: int,
    head_dim_settable: bool,
    count: int = 5,
) -> StudentSearch:
    """The best `count` shapes near `budget`. `plan_for(sets)` plans a student from `--set`-like overrides
    (raising WselError for an invalid one); `keys` names each axis's config key, `teacher` gives its sizes,
    `fixed` the sizes the user set."""
    shapes: list[tuple[dict[str, int], int, int]] = []  # (sizes at one layer, elements outside layers, per layer)
    for hidden in _widths(teacher, fixed, multiple_of):
        sizes = _shape(hidden, teacher, fixed, multiple_of, head_dim_settable)
        if sizes is None:
            continue
        try:
            plan = plan_for(_sets(keys, sizes | {"layers": 1}))
        except WselError:
            continue  # a width no selection can make (RoPE pairs, a fixed size it contradicts, ...)
        per_layer = sum(math.prod(t.shape) for t in plan.student_tensors if find_layer(t.name) is not None)
        shapes.append((sizes, parameters(plan) - per_layer, per_layer))
    depths = [fixed["layers"]] if "layers" in fixed else range(1, teacher["layers"] + 1)
    found = [
        (sizes | {"layers": depth}, outside + depth * per_layer)
        for sizes, outside, per_layer in shapes
        for depth in depths
    ]
    if not found:
        raise PlanError(
            f"--target-params: no student of this family passes wsel's checks with --multiple-of {multiple_of} "
            "and the sizes set; set fewer sizes, or a smaller --multiple-of"
        )
    found.sort(key=lambda item: _rank(item[0], item[1], budget, teacher))
    best = []
    for sizes, expected in found[:count]:
        plan = plan_for(_sets(keys, sizes))  # the listed ones, planned at their own depth
        counted = parameters(plan)
        assert counted == expected, (sizes, counted, expected)  # layers of one family have equal shapes
        best.append(Candidate(sizes, _sets(keys, sizes), counted, counted / teacher_parameters))
    note = None
    if abs(best[0].parameters - budget) > WITHIN * budget:
        smallest = min(found, key=lambda item: item[1])
        note = (
            f"no valid student is within {WITHIN:.0%} of {budget} parameters; the nearest has "
            f"{best[0].parameters}"
            + (
                f" (the smallest possible has {smallest[1]}: its embeddings and the "
                f"widths wsel may choose, multiples of {multiple_of}, set the floor)"
                if smallest[1] > budget
                else ""
            )
        )
    return StudentSearch(budget, teacher_parameters, multiple_of, tuple(best), note)


def _widths(teacher: dict[str, int], fixed: dict[str, int], multiple_of: int) -> list[int]:
    if "hidden" in fixed:
        return [fixed["hidden"]]
    return list(range(multiple_of, teacher["hidden"] + 1, multiple_of))


def _shape(
    hidden: int, teacher: dict[str, int], fixed: dict[str, int], multiple_of: int, head_dim_settable: bool
) -> dict[str, int] | None:
    """The sizes at this width by the rule (the fixed ones as given), or None when the rule cannot make one."""
    sizes = {"hidden": hidden}
    head_dim = fixed.get("head_dim", teacher["head_dim"])
    group = teacher["heads"] // teacher.get("kv_heads", teacher["heads"])  # no kv_heads axis: one per head
    heads = fixed.get("heads", max(group, group * round(hidden / (head_dim * group))))
    if heads * head_dim != hidden and not head_dim_settable:
        return None
    ratio = teacher["mlp"] / teacher["hidden"]
    mlp = fixed.get("mlp", min(teacher["mlp"], max(multiple_of, multiple_of * round(hidden * ratio / multiple_of))))
    sizes |= {"heads": heads, "head_dim": head_dim, "mlp": mlp}
    if "kv_heads" in teacher:  # GQA; without it, every head has its own keys and values
        sizes["kv_heads"] = fixed.get("kv_heads", max(1, heads // group))
    return sizes


def _sets(keys: dict[str, str], sizes: dict[str, int]) -> dict[str, int]:
    return {keys[axis]: sizes[axis] for axis in SEARCHED if axis in keys and axis in sizes}


def _rank(sizes: dict[str, int], count: int, budget: int, teacher: dict[str, int]) -> tuple[bool, bool, float, int]:
    """Near the budget first; among those, attention as wide as hidden (heads × head_dim = hidden) first, then
    the most balanced shrink (depth factor closest to the width factor). The others by their distance."""
    distance = abs(count - budget)
    near = distance <= WITHIN * budget
    wider = sizes["heads"] * sizes["head_dim"] != sizes["hidden"]
    balance = abs(sizes["layers"] / teacher["layers"] - sizes["hidden"] / teacher["hidden"])
    return (not near, wider and near, balance if near else distance, distance)
