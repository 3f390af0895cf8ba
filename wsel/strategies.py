"""Element strategies: which indices of each axis a student keeps (layer strategies: `wsel.layers`).

Element strategies choose one Selection per axis name; the same name always gets the same
Selection, which is what keeps a strategy consistent across every tensor carrying the axis.

- `uniform` (default, the paper): T % S == 0 → arange(S) * (T // S), else round(linspace(0, T-1, S)).
- `first`: the leading slice 0:S.
- `random`: S indices drawn without replacement, sorted; the generator is seeded by `--seed` and a
  SHA-256 of the axis name, so every tensor of an axis gets the same set, and runs repeat exactly.
- `magnitude`: the S indices with the largest importance score, sorted; scores are sums of squared
  teacher weights per axis index (see `wsel.plan.importance`), ties broken towards the lower index.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from wsel import select
from wsel.errors import PlanError
from wsel.options import ElementStrategyName
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
        if self.name == "magnitude":
            return select.from_indices(teacher, top_indices(self.score(axis, teacher), student), "magnitude")
        raise AssertionError(f"element strategy {self.name!r}: PlanOptions refuses unknown names")

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
