"""How to select: the options of a plan and the kinds they take, as types.

Kept free of numpy and the planner, so that the command line can build options (and `wsel --version`
answer) without loading either.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args

from wsel.checkpoint.dtypes import DTYPES
from wsel.errors import PlanError

ElementStrategyName = Literal["uniform", "first", "random", "magnitude"]  # see `wsel.strategies`
LayerStrategyName = Literal["first", "uniform", "last"]
Attention = Literal["structured", "flat"]  # with architecture data: whole heads, GQA groups, RoPE pairs; or flat
ELEMENT_STRATEGIES: tuple[ElementStrategyName, ...] = get_args(ElementStrategyName)
LAYER_STRATEGIES: tuple[LayerStrategyName, ...] = get_args(LayerStrategyName)
ATTENTION: tuple[Attention, ...] = get_args(Attention)


@dataclass(frozen=True)
class LayerList:
    """Explicit teacher layers, as the user wrote them: `0,2,4,6`, or one list per layer group separated by
    `;` (groups in sorted order). Parsed per group, so that errors can name the group."""

    text: str

    def __str__(self) -> str:
        return self.text


LayerStrategy = LayerStrategyName | LayerList


def parse_layer_strategy(text: str) -> LayerStrategy:
    """`--layers` as given: a strategy name, or else a layer list (checked when the groups are known)."""
    return next((name for name in LAYER_STRATEGIES if name == text), None) or LayerList(text)


@dataclass(frozen=True)
class PlanOptions:
    """How to select. Field order is the order the report lists them in."""

    layers: LayerStrategy = "first"  # which teacher layers: the paper's first-N (a str is parsed: "0,2,4,6")
    elements: ElementStrategyName = "uniform"  # which indices of each axis: the paper's rule, bit-exact
    dtype: str | None = None  # cast floating tensors to this safetensors dtype; None keeps the teacher's bytes
    exclude: tuple[str, ...] = ()  # globs of student tensors left to the student's own init (paper: `head*`)
    attention: Attention = "structured"  # whole heads, GQA groups and RoPE pairs; "flat": the paper's per-dim rule
    seed: int = 0  # for the random element strategy
    rescale: bool = False  # multiply weights whose input dim shrank by sqrt(teacher / student) (weight subcloning)

    def __post_init__(self) -> None:
        # Options also come from Python callers: refuse what the types promise cannot happen.
        if isinstance(self.layers, str):
            object.__setattr__(self, "layers", parse_layer_strategy(self.layers))
        if isinstance(self.exclude, str):  # a glob is not a sequence of one-character globs ("*" matches all)
            raise TypeError(f"exclude={self.exclude!r}: give a tuple of globs, e.g. ({self.exclude!r},)")
        object.__setattr__(self, "exclude", tuple(self.exclude))
        if self.elements not in ELEMENT_STRATEGIES:
            raise PlanError(f"unknown element strategy {self.elements!r}; use one of {', '.join(ELEMENT_STRATEGIES)}")
        if self.attention not in ATTENTION:
            raise PlanError(f"unknown attention {self.attention!r}; use one of {', '.join(ATTENTION)}")
        if self.dtype is not None and self.dtype not in DTYPES:
            raise PlanError(f"unknown dtype {self.dtype!r}; use a safetensors dtype such as BF16")

    def to_dict(self) -> dict[str, Any]:
        return {
            "layers": str(self.layers),
            "elements": self.elements,
            "dtype": self.dtype,
            "exclude": list(self.exclude),
            "attention": self.attention,
            "seed": self.seed,
            "rescale": self.rescale,
        }
