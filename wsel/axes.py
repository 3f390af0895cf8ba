"""Logical axes, and the labels that name the axes of every tensor dim.

Architecture data writes each dim as an expression over abstract axes: blocks side by side
(`|`, fused tensors: `heads*head_dim | kv_heads*head_dim`), each a product of axes, outermost first
(`heads*head_dim`: head-major rows), or an integer literal. A factor may be a parenthesized group of blocks,
repeated within each index of the factors before it: `heads*(nope_dim | head_dim)` is DeepSeek's query rows,
each head's no-RoPE dims and then its RoPE dims. A plan records each dim of each tensor as a
concrete `DimLabel` over the axes it selected: per-layer axes carry their layer (`heads[3]*head_dim`),
staged name sets their stage (`hidden@2`), and the generic path names a dim by its sizes (`384→192`).
`DimLabel.parse` and `str(label)` are the one reader and writer of that text (plan, report, provenance,
verify and the importance scores all go through them; architecture data is parsed by them too, then
checked by `parse_dim`). `compose` turns a label back into its indices.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np

from wsel import select
from wsel.select import Selection

# How an axis may shrink.
AxisKind = Literal[
    "width",  # any subset, chosen by the element strategy (the paper's uniform rule by default)
    "heads",  # whole attention heads; query heads stay with their GQA key/value group
    "head_dim",  # dims inside a head; for q/k under RoPE, a stride that keeps rotary pairs
    "experts",  # whole experts of a mixture-of-experts layer, chosen by the element strategy; the router's rows
    # and the tensors named per expert (`{expert}` in architecture data) follow the kept ones, in order
    "equal",  # never subsampled: the student must match (token ids, classes, image geometry)
    "truncate",  # positions: the student keeps the first N
]

AXIS_KINDS: dict[str, AxisKind] = {
    "hidden": "width",
    "mlp": "width",
    "attn": "width",  # attention inner width (heads * head_dim) where the head count is not known
    "shared_mlp": "width",  # a mixture-of-experts layer's always-on shared expert (Qwen2-MoE), a dense MLP
    "experts": "experts",
    "heads": "heads",
    "kv_heads": "heads",
    "head_dim": "head_dim",
    "v_head_dim": "head_dim",
    "nope_dim": "head_dim",  # the dims of a q/k head that RoPE leaves alone, beside its rotary `head_dim` (DeepSeek)
    "dense_mlp": "width",  # a dense MLP in a mixture-of-experts model (DeepSeek's first layers), beside the experts'
    "q_lora": "width",  # multi-head latent attention's low-rank query and key/value latents (DeepSeek)
    "kv_lora": "width",
    "expert_groups": "heads",  # groups of experts a token's routing chooses among first (DeepSeek's n_group)
    "vocab": "equal",
    "type_vocab": "equal",
    "classes": "equal",
    "channels": "equal",
    "patch": "equal",
    "patches": "equal",
    "registers": "equal",
    "kernel": "equal",
    "positions": "truncate",
    "buckets": "equal",  # T5's relative-position buckets (relative_attention_bias rows)
    "projection": "width",  # a two-tower model's shared embedding space (CLIP's projection_dim)
}
# chosen per layer (identical under uniform selection); the experts a layer keeps all share its one `mlp[i]`
PER_LAYER_AXES = (
    "mlp",
    "heads",
    "kv_heads",
    "experts",
    "shared_mlp",
    "dense_mlp",
    "q_lora",
    "kv_lora",
    "expert_groups",
)

Block = tuple[str, ...]  # a product of factors, outermost first (or one integer literal)


def base_axis(axis: str) -> str:
    """The axis without its stack: a model of several stacks (CLIP's text and vision towers) names each
    stack's axes `text.hidden`, `vision.heads`, ...; each is its own axis of the base axis's kind."""
    return axis.rpartition(".")[2]


def stack_of(axis: str) -> str:
    """The stack qualifier of an axis, with its dot (`text.` for `text.hidden`), or `` for unqualified axes."""
    stack, dot, _ = axis.rpartition(".")
    return stack + dot


def kind_of(axis: str) -> AxisKind | None:
    """The kind of an abstract axis, qualified by a stack or not (`text.vocab` → equal); None if unknown."""
    return AXIS_KINDS.get(base_axis(axis))


def is_literal(factor: str) -> bool:
    """An integer literal (ASCII digits): a block of that many indices, copied whole."""
    return factor.isascii() and factor.isdigit()


def is_group(factor: str) -> bool:
    """A parenthesized group of blocks (`(nope_dim | head_dim)`), one factor of a product."""
    return factor.startswith("(")


def group_label(factor: str) -> DimLabel:
    """The blocks inside a group factor: `(nope_dim | head_dim)` → `nope_dim | head_dim`."""
    return DimLabel.parse(factor[1:-1])


def _split_top(text: str, separator: str) -> list[str]:
    """`text` split at each `separator` outside parentheses. Raises ValueError for unbalanced parentheses."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0:
            break
        if char == separator and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if depth != 0:
        raise ValueError(f"unbalanced parentheses in dim {text!r}")
    return [*parts, text[start:]]


def _factor(text: str) -> str:
    """One factor as written in labels: stripped, a group's inside normalized (`(a|b)` → `(a | b)`)."""
    factor = text.strip()
    if "(" in factor or ")" in factor:
        if not (factor.startswith("(") and factor.endswith(")")):
            raise ValueError(f"a group must be a whole factor, in parentheses: {factor!r}")
        return f"({DimLabel.parse(factor[1:-1])})"
    return factor


def axis_name(axis: str, layer: int | None) -> str:
    """`mlp[3]` for per-layer axes, plain names otherwise."""
    return f"{axis}[{layer}]" if base_axis(axis) in PER_LAYER_AXES and layer is not None else axis


def axis_kind(factor: str) -> AxisKind | None:
    """The kind of the axis a label factor names (`hidden@2` → width), or None for literals and size labels."""
    return kind_of(factor.split("@")[0].split("[")[0])


def size_label(teacher: int, student: int) -> str:
    """The generic path's axis name: a dim known only by its sizes (`384→192`, or `384` when copied)."""
    return f"{teacher}" if teacher == student else f"{teacher}→{student}"


def literal_size(factor: str) -> int | None:
    """The teacher size a factor states itself: an integer literal, or a size label (`384→192` → 384)."""
    first = factor.split("→")[0]
    return int(first) if is_literal(first) else None


@dataclass(frozen=True)
class DimLabel:
    """The axes of one dim: `blocks` side by side, each a product of factors, outermost first.

    In architecture data the factors are abstract axes (`heads*head_dim`); in a plan they are concrete
    (`heads[3]*head_dim`, `hidden@2`, `384→192`). Integer literals are blocks copied whole."""

    blocks: tuple[Block, ...]

    @classmethod
    def parse(cls, text: str) -> DimLabel:
        """Raises ValueError for unbalanced parentheses or a group that is not a whole factor."""
        return cls(tuple(tuple(_factor(f) for f in _split_top(block, "*")) for block in _split_top(text, "|")))

    @classmethod
    def single(cls, axis: str) -> DimLabel:
        return cls(((axis,),))

    def __str__(self) -> str:
        return " | ".join(self.block_names)

    @property
    def block_names(self) -> list[str]:
        """Each block as text: `heads[3]*head_dim`, `attn`, `1`."""
        return ["*".join(block) for block in self.blocks]

    @property
    def axes(self) -> list[str]:
        """Every factor that names an axis (not an integer literal), in order, those inside groups too."""
        return [
            a
            for block in self.blocks
            for f in block
            if not is_literal(f)
            for a in (group_label(f).axes if is_group(f) else [f])
        ]

    def at_layer(self, layer: int | None) -> DimLabel:
        """An architecture dim made concrete for one layer: `heads*head_dim` → `heads[3]*head_dim`."""

        def concrete(f: str) -> str:
            return f"({group_label(f).at_layer(layer)})" if is_group(f) else axis_name(f, layer)

        return DimLabel(tuple(tuple(concrete(f) for f in block) for block in self.blocks))

    def size(self, sizes: Mapping[str, int]) -> int:
        """The dim's size, given each axis's."""

        def factor_size(f: str) -> int:
            return int(f) if is_literal(f) else group_label(f).size(sizes) if is_group(f) else sizes[f]

        return sum(math.prod(factor_size(f) for f in block) for block in self.blocks)


def parse_dim(text: str) -> DimLabel:
    """An architecture data file's dim expression over known axes. Raises ValueError."""
    label = DimLabel.parse(text)
    for axis in label.axes:
        if kind_of(axis) is None:
            raise ValueError(f"unknown axis {axis!r} in dim {text!r}")
    _check_literals(label, text)
    return label


def _check_literals(label: DimLabel, text: str) -> None:
    # A literal inside a product repeats what follows it within each index of what precedes it:
    # `heads*3*head_dim` is GPT-NeoX's fused rows, q|k|v of head 0, then of head 1, ... A product
    # cannot start or end with one (`2*hidden` is two blocks side by side: `hidden | hidden`).
    for factors in label.blocks:
        if len(factors) > 1 and (is_literal(factors[0]) or is_literal(factors[-1])):
            raise ValueError(f"integer literals cannot start or end a product in dim {text!r}; use blocks (|)")
        for factor in factors:
            if is_group(factor):
                _check_literals(group_label(factor), text)


def linear_and_1x1_conv(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    """Whether one shape is a Linear `[out, in]` and the other a 1x1 convolution `[out, in, 1, 1]` (whatever
    the sizes of out and in): the same kind of weight, whose elements are stored in the same order."""
    return sorted((len(a), len(b))) == [2, 4] and (a if len(a) == 4 else b)[2:] == (1, 1)


def compose(label: DimLabel, axes: Mapping[str, Selection], size: int) -> Selection:
    """The Selection over a tensor dim of teacher size `size` from its label and the axes' selections.

    `heads[0]*head_dim | kv_heads[0]*head_dim`: blocks side by side, each an outer product (outer
    axis first). An integer, or a lone name absent from `axes`, is a block copied whole.
    """
    return _compose_blocks(_block_selections(label, axes, size), size)


def _compose_blocks(blocks: list[list[Selection]], size: int) -> Selection:
    parts, offset = [], 0
    for block in blocks:
        indices = np.zeros(1, dtype=np.int64)
        for sel in block:
            indices = (indices[:, None] * sel.teacher_size + sel.indices()[None, :]).ravel()  # [block so far]
        parts.append(offset + indices)
        offset += math.prod(sel.teacher_size for sel in block)
    return select.from_indices(size, np.concatenate(parts))


def composed_size(label: DimLabel, axes: Mapping[str, Selection], size: int) -> int:
    """How many indices `compose` keeps, without building them (for a dim of a tensor with no elements,
    whose other dims may be astronomically large)."""
    return sum(math.prod(sel.size for sel in block) for block in _block_selections(label, axes, size))


def _block_selections(label: DimLabel, axes: Mapping[str, Selection], size: int | None) -> list[list[Selection]]:
    """Each block's factors as Selections, checked to span exactly `size` teacher indices before any index
    is built (a label read from a file may claim any size; `None`: a group's, which spans what it spans).
    Raises ValueError."""
    blocks = []
    for factors in label.blocks:
        block = []
        for factor in factors:
            if factor in axes:
                block.append(axes[factor])
            elif is_literal(factor):
                block.append(select.identity(int(factor)))
            elif is_group(factor):  # its blocks, composed over what they span
                inner = _block_selections(group_label(factor), axes, None)
                block.append(_compose_blocks(inner, sum(math.prod(s.teacher_size for s in b) for b in inner)))
            elif size is not None and len(factors) == 1 and size % len(label.blocks) == 0:
                block.append(select.identity(size // len(label.blocks)))  # an equal axis, copied (`kernel`)
            else:
                raise ValueError(f"axis {factor!r} of {str(label)!r} has no recorded selection")
        blocks.append(block)
    spans = sum(math.prod(sel.teacher_size for sel in block) for block in blocks)
    if size is not None and spans != size:
        raise ValueError(f"{str(label)!r} spans {spans} indices, the tensor dim has {size}")
    return blocks
