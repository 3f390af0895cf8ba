"""Strategies: which layers a student keeps, and which indices of each axis.

Element strategies choose one Selection per axis name; the same name always gets the same
Selection, which is what keeps a strategy consistent across every tensor carrying the axis.

- `uniform` (default, the paper): T % S == 0 → arange(S) * (T // S), else round(linspace(0, T-1, S)).
- `first`: the leading slice 0:S.
- `random`: S indices drawn without replacement, sorted; the generator is seeded by `--seed` and a
  SHA-256 of the axis name, so every tensor of an axis gets the same set, and runs repeat exactly.
- `magnitude`: the S indices with the largest importance score, sorted; scores are sums of squared
  teacher weights per axis index (see `wsel.importance`), ties broken towards the lower index.

Layer strategies map each group of repeated blocks (per stage in staged networks):
- `first` (default, the paper): student layer i ← teacher layer i.
- `uniform`: spread over the depth, first and last kept: round(linspace(0, T-1, S)).
- `last`: the last S layers.
- an explicit list `0,2,4,6` (one list per group, groups separated by `;` in sorted group order).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from wsel import select
from wsel.errors import PlanError
from wsel.options import ElementStrategyName, LayerList, LayerStrategy
from wsel.select import Selection


@dataclass
class ElementStrategy:
    """Chooses the kept indices of an axis. `scores` (axis → importance per index) feeds `magnitude`."""

    name: ElementStrategyName = "uniform"
    seed: int = 0
    scores: dict[str, np.ndarray] = field(default_factory=dict)

    def choose(self, axis: str, teacher: int, student: int) -> Selection:
        if student == teacher:
            return select.identity(teacher)
        if self.name == "uniform":
            return select.uniform(teacher, student)
        if self.name == "first":
            return Selection(teacher, 0, 1, student)
        if self.name == "random":
            rng = np.random.default_rng([self.seed, _axis_key(axis)])
            return select.from_indices(teacher, np.sort(rng.choice(teacher, size=student, replace=False)), "random")
        # magnitude: the last name there is (PlanOptions refuses any other)
        return select.from_indices(teacher, top_indices(self.score(axis, teacher), student), "magnitude")

    def score(self, axis: str, teacher: int) -> np.ndarray:
        scores = self.scores.get(axis)
        if scores is None or len(scores) != teacher:
            raise PlanError(f"no importance scores for axis {axis} ({teacher} indices); this is a bug in wsel")
        return scores


def top_indices(scores: np.ndarray, count: int) -> np.ndarray:
    """The `count` highest-scoring indices, ascending; equal scores prefer the lower index."""
    order = np.lexsort((np.arange(len(scores)), -scores))  # by score descending, then index ascending
    return np.sort(order[:count])


def _axis_key(axis: str) -> int:
    return int.from_bytes(hashlib.sha256(axis.encode()).digest()[:8], "little")


def layer_indices(strategy: LayerStrategy, teacher: int, student: int, group: str) -> list[int]:
    """Teacher layers read by student layers 0..student-1, for one group."""
    if student > teacher:
        raise PlanError(
            f"student has {student} layers in {group!r} but the teacher has {teacher}; "
            "a student cannot be deeper than its teacher"
        )
    if strategy == "first":
        return list(range(student))
    if strategy == "last":
        return list(range(teacher - student, teacher))
    if strategy == "uniform":
        if student == 1:
            return [0]
        return [round(i * (teacher - 1) / (student - 1)) for i in range(student)]
    kept = parse_layer_list(strategy.text, group)
    if len(kept) != student:
        raise PlanError(f"--layers {strategy}: {len(kept)} layers listed for {group!r} but the student has {student}")
    if kept != sorted(set(kept)) or kept[-1] >= teacher:
        raise PlanError(
            f"--layers {strategy}: layers of {group!r} must be increasing and below the teacher's {teacher}"
        )
    return kept


def parse_layer_list(text: str, group: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise PlanError(
            f"--layers {text!r}: expected first, uniform, last or a list such as 0,2,4,6 (for {group!r})"
        ) from None


def group_strategy(strategy: LayerStrategy, groups: list[str], group: str) -> LayerStrategy:
    """The strategy for one group: explicit lists may give one list per group, separated by `;`."""
    if not isinstance(strategy, LayerList) or ";" not in strategy.text:
        return strategy
    parts = strategy.text.split(";")
    if len(parts) != len(groups):
        raise PlanError(
            f"--layers {strategy.text!r}: {len(parts)} lists for {len(groups)} layer groups ({', '.join(groups)})"
        )
    return LayerList(parts[groups.index(group)])
