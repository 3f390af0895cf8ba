"""Architecture families: tensor templates with an axis expression per dim, and how to read sizes from config.json.

Each `wsel/arch/*.json` describes one family. Files are validated strictly when loaded
(unknown keys, unknown axes and bad expressions fail), so a typo can never be silently ignored.
Adding a family touches no code.

Mixture-of-experts layers store each expert's weights under its own name (`experts.{expert}.w1.weight`, as
Hugging Face checkpoints do): `{expert}` is the index on the layer's `experts` axis, and student expert j reads
the teacher's j-th kept expert, as student layer i reads its teacher layer.

A model of several stacks (CLIP's and SigLIP's text and vision towers) qualifies each stack's axes with its
name: `text.hidden`, `vision.heads`, sized from its own config keys (`text_config.hidden_size`), each stack
with its own depth (`text.layers`). A per-layer template belongs to the stack its qualified axes name (a
template naming none, such as a norm over a shared `hidden`, to the stack of the other templates of its layer
group), and each stack's layers are mapped on their own. Unqualified axes (`projection`) are shared.

A mixture-of-experts model may give some layers a dense MLP instead (templates over the `dense_mlp` axis):
DeepSeek its first `first_k_dense_replace`, Qwen-MoE those in `mlp_only_layers` or off its
`decoder_sparse_step`. `dense_layers` says how a config states them (a count of first layers, or a list of layer
indices with other keys set so that the list alone decides): a student layer is of the kind of the teacher
layer it reads, so the student's statement follows its layer map. `derived_keys` are config keys that restate
other sizes (DeepSeek's `qk_head_dim`); the student's config.json gets them recomputed from its own values.

`in_memory` says how a model object holds tensors that checkpoints store otherwise (transformers 5 fuses a
layer's experts: `mlp.experts.gate_up_proj` [experts, gate|up, hidden] is, for each expert, its `gate_proj`
rows then its `up_proj` rows): model template → the checkpoint templates it is made of, stacked over `{expert}`
when they name one, each a block of equal rows. `select_into` fills a model's fused tensor through views
under the checkpoint names.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib.abc import Traversable
from typing import Any

from wsel.arch.data import data_files, read_document, string_list
from wsel.axes import AXIS_KINDS, DimLabel, base_axis, kind_of, parse_dim, stack_of
from wsel.errors import ArchDataError
from wsel.hfconfig import check_expression

_FIELDS: dict[str, type | tuple[type, ...]] = {
    "name": str,
    "doc": str,
    "model_types": list,
    "sizes": dict,
    "rope": (dict, type(None)),
    "prefixes": list,
    "tensors": dict,
    "tied": dict,
    "tie_key": (str, type(None)),
    "embeddings": list,
    "in_out_weights": list,
    "layer_lists": list,
    "dense_layers": (dict, type(None)),
    "derived_keys": dict,
    "in_memory": dict,
    "ignore": list,
}
_ROPE_FIELDS = {"partial_rotary_factor"}
_ROPE_OPTIONAL = {"interleaved"}  # whether RoPE pairs dims 2i, 2i+1 (DeepSeek); absent: i, i + r/2 (rotate_half)
REQUIRED_SIZES = ("hidden", "layers", "heads", "kv_heads", "head_dim")  # every stack's
# sizes that are counts, not axes of any tensor: the layers, how many experts route each token, and how many
# expert groups it chooses among first (DeepSeek's topk_group)
# ... and layers stored after the model's last that it does not build (DeepSeek-V3's multi-token prediction)
COUNTS = {"layers", "experts_per_token", "expert_groups_per_token", "prediction_layers"}


@dataclass(frozen=True)
class Template:
    """One tensor name pattern (`{p}` = model prefix, `{layer}` = layer index, `{expert}` = expert index within
    the layer) and its dims."""

    pattern: str
    dims: tuple[DimLabel, ...]
    stack: str = ""  # a per-layer template's stack qualifier (`text.`), whose `layers` it repeats over

    @property
    def group(self) -> str:
        """The layer group a per-layer template repeats in: its name up to `.{layer}`."""
        return self.pattern.split(".{layer}")[0]

    @property
    def per_layer(self) -> bool:
        return "{layer}" in self.pattern

    @property
    def per_expert(self) -> bool:
        return "{expert}" in self.pattern

    def name(self, prefix: str, layer: int | None = None, expert: int | None = None) -> str:
        name = self.pattern.replace("{p}", prefix).replace("{layer}", "" if layer is None else str(layer))
        return name.replace("{expert}", "" if expert is None else str(expert))

    def regex(self, prefix: str) -> re.Pattern[str]:
        escaped = re.escape(self.pattern.replace("{p}", prefix)).replace(re.escape("{layer}"), r"(?P<layer>[0-9]{1,9})")
        escaped = escaped.replace(re.escape("{expert}"), r"(?P<expert>[0-9]{1,9})")
        return re.compile(f"^{escaped}$")


@dataclass(frozen=True)
class DenseLayers:
    """How a config says which layers have a dense MLP: `count` (its first N layers), or `list` (these layer
    indices) and, with `sparse_step`, also every layer i with (i + 1) % step != 0 (Qwen-MoE's
    `decoder_sparse_step`), as transformers builds them."""

    key: str
    is_count: bool
    sparse_step: str | None = None

    def built(self, config: dict[str, Any], depth: int) -> list[int]:
        """The layers of a `depth`-layer model that `config` gives a dense MLP."""
        value = config.get(self.key)
        if self.is_count:
            return list(range(min(value, depth))) if type(value) is int else []
        listed = set(value) if isinstance(value, list) else set()
        step = config.get(self.sparse_step) if self.sparse_step else None
        step = step if type(step) is int and step > 0 else 1
        return [i for i in range(depth) if i in listed or (i + 1) % step != 0]

    def statement(self, layers: list[int]) -> dict[str, Any]:
        """The config values that give exactly `layers` a dense MLP (for a count: the first len(layers))."""
        if self.is_count:
            return {self.key: len(layers)}
        return {self.key: layers, **({self.sparse_step: 1} if self.sparse_step else {})}


@dataclass(frozen=True)
class Architecture:
    name: str
    doc: str
    model_types: tuple[str, ...]
    sizes: dict[str, tuple[str, ...]]  # axis → config expressions, first present wins
    rope_fraction: tuple[str, ...] | None  # expressions for the rotary share of head_dim; None: no RoPE
    rope_interleaved: tuple[str, ...]  # expressions that say whether RoPE pairs are interleaved; () : never
    prefixes: tuple[str, ...]  # candidates for `{p}`, the base model's prefix
    templates: tuple[Template, ...]
    tied: dict[str, str]  # template → template it equals when embeddings are tied
    tie_key: str | None  # config key saying whether embeddings are tied
    embeddings: tuple[str, ...]  # lookup tables: their dims are not inputs of a product (never rescaled)
    in_out_weights: tuple[str, ...]  # weights stored [in, out] (GPT-2 Conv1D); others are [out, in, ...]
    layer_lists: tuple[str, ...]  # config keys holding one entry per layer
    dense_layers: DenseLayers | None  # how a config says which layers have a dense MLP (None: all alike)
    derived_keys: dict[str, str]  # config key → the expression a student's config.json recomputes it from
    in_memory: dict[str, tuple[str, ...]]  # a model object's template → the checkpoint templates it is made of
    ignore: tuple[str, ...]  # teacher tensors (patterns) that are buffers, never written
    source: str  # the data file's name, for messages

    @property
    def stacks(self) -> tuple[str, ...]:
        """The stack qualifiers, one per depth in sizes: `("",)` for one stack, `("text.", "vision.")` for CLIP."""
        return tuple(stack_of(axis) for axis in self.sizes if base_axis(axis) == "layers")

    @property
    def dense_patterns(self) -> frozenset[str]:
        """The templates of a dense MLP beside experts (over the `dense_mlp` axis)."""
        return frozenset(t.pattern for t in self.templates if any("dense_mlp" in d.axes for d in t.dims))

    def template(self, pattern: str) -> Template:
        return next(t for t in self.templates if t.pattern == pattern)

    def input_dim(self, template: Template) -> int | None:
        """The dim a weight multiplies its input along (None: no product, e.g. norms, biases, embeddings).

        A stack of experts' weights (`[experts, out, in]`, as transformers 5 fuses them: `experts.down_proj`,
        no `.weight` suffix) is one [out, in] weight per expert."""
        if template.pattern in self.embeddings:
            return None
        if len(template.dims) == 3 and template.dims[0].axes == ["experts"]:
            return 2
        if len(template.dims) < 2 or not template.pattern.endswith("weight"):
            return None
        return 0 if template.pattern in self.in_out_weights else 1


def load_family(path: Traversable) -> Architecture:
    """Read and validate one family file. Raises ArchDataError naming the file and the problem."""

    def fail(problem: str) -> ArchDataError:
        return ArchDataError(f"{path}: {problem}")

    doc = read_document(path, _FIELDS)
    for key in ("model_types", "prefixes", "embeddings", "in_out_weights", "layer_lists", "ignore"):
        string_list(path, key, doc[key])
    for key, expression in doc["derived_keys"].items():
        try:
            if not isinstance(expression, str):
                raise ValueError("expected an expression (a string)")
            check_expression(expression)
        except (SyntaxError, ValueError) as e:
            raise fail(f"derived_keys.{key}: {e}") from None

    sizes: dict[str, tuple[str, ...]] = {}
    for axis, alternatives in doc["sizes"].items():
        if kind_of(axis) is None and base_axis(axis) not in COUNTS:
            raise fail(f"sizes: unknown axis {axis!r}; known: {', '.join(sorted(AXIS_KINDS))}")
        if not isinstance(alternatives, list) or not alternatives or not all(isinstance(a, str) for a in alternatives):
            raise fail(f"sizes.{axis}: expected a non-empty list of expressions")
        for expression in alternatives:
            try:
                check_expression(expression)
            except (SyntaxError, ValueError) as e:
                raise fail(f"sizes.{axis}: {e}") from None
        sizes[axis] = tuple(alternatives)
    stacks = [stack_of(axis) for axis in sizes if base_axis(axis) == "layers"] or [""]
    for stack in stacks:  # each stack (one, unqualified, in most families) has its own attention and depth
        # an unqualified axis is shared by the stacks that do not qualify it (an encoder-decoder's `hidden`)
        missing = sorted(stack + axis for axis in REQUIRED_SIZES if stack + axis not in sizes and axis not in sizes)
        if missing:
            raise fail(f"sizes must define {missing}")

    rope = doc["rope"]
    if rope is not None and not _ROPE_FIELDS <= set(rope) <= _ROPE_FIELDS | _ROPE_OPTIONAL:
        raise fail(f"rope: expected {sorted(_ROPE_FIELDS)}, and optionally {sorted(_ROPE_OPTIONAL)}")
    for key in sorted(rope or {}):
        string_list(path, f"rope.{key}", rope[key])

    templates = []
    for pattern, dims in doc["tensors"].items():
        if not isinstance(dims, list) or not all(isinstance(d, str) for d in dims):
            raise fail(f"tensors.{pattern}: expected a list of dim expressions")
        try:
            parsed = tuple(parse_dim(d) for d in dims)
        except ValueError as e:
            raise fail(f"tensors.{pattern}: {e}") from None
        for axis in {a for d in parsed for a in d.axes}:
            if axis not in sizes and base_axis(axis) != "v_head_dim":
                raise fail(f"tensors.{pattern}: axis {axis!r} has no entry in sizes")
        named = {stack_of(a) for d in parsed for a in d.axes} - {""}
        if len(named) > 1 and "{layer}" in pattern:
            raise fail(f"tensors.{pattern}: a per-layer tensor names axes of several stacks: {sorted(named)}")
        template = Template(pattern, parsed, min(named) if named else "")
        if template.per_expert and not (template.per_layer and "experts" in sizes):
            raise fail(f"tensors.{pattern}: {{expert}} needs {{layer}} in the name and an experts entry in sizes")
        templates.append(template)
    templates = _with_stacks(templates, stacks, fail)
    patterns = {t.pattern for t in templates}
    for key in ("embeddings", "in_out_weights"):
        for pattern in doc[key]:
            if pattern not in patterns:
                raise fail(f"{key}: {pattern!r} is not a tensor of this file")
    for alias, target in doc["tied"].items():
        if not isinstance(target, str) or alias not in patterns or target not in patterns:
            raise fail(f"tied: {alias!r} → {target!r} must both be tensors of this file")
    in_memory = {
        pattern: _in_memory_parts(pattern, parts, templates, fail) for pattern, parts in doc["in_memory"].items()
    }
    return Architecture(
        name=doc["name"],
        doc=doc["doc"],
        model_types=tuple(doc["model_types"]),
        sizes=sizes,
        rope_fraction=tuple(rope["partial_rotary_factor"]) if rope else None,
        rope_interleaved=tuple(rope.get("interleaved", ())) if rope else (),
        prefixes=tuple(doc["prefixes"]),
        templates=tuple(templates),
        tied=dict(doc["tied"]),
        tie_key=doc["tie_key"],
        embeddings=tuple(doc["embeddings"]),
        in_out_weights=tuple(doc["in_out_weights"]),
        layer_lists=tuple(doc["layer_lists"]),
        dense_layers=_dense_layers(doc["dense_layers"], fail),
        derived_keys={str(k): v for k, v in doc["derived_keys"].items()},
        in_memory=in_memory,
        ignore=tuple(doc["ignore"]),
        source=path.name,
    )


def _dense_layers(value: dict[str, Any] | None, fail: Callable[[str], ArchDataError]) -> DenseLayers | None:
    """`{"count": KEY}` or `{"list": KEY}` (and optionally `"sparse_step": KEY`), checked."""
    if value is None:
        return None
    if set(value) == {"count"} and isinstance(value["count"], str):
        return DenseLayers(value["count"], True)
    step = value.get("sparse_step")
    if set(value) <= {"list", "sparse_step"} and isinstance(value.get("list"), str) and isinstance(step, str | None):
        return DenseLayers(value["list"], False, step)
    raise fail('dense_layers: expected {"count": KEY} or {"list": KEY, "sparse_step": KEY}')


def _in_memory_parts(
    pattern: str, parts: object, templates: list[Template], fail: Callable[[str], ArchDataError]
) -> tuple[str, ...]:
    """One `in_memory` entry checked: a template of this file made of others, stacked over `{expert}` (its first
    dim is `experts`) or not, as many as its row blocks."""
    by_pattern = {t.pattern: t for t in templates}
    if not isinstance(parts, list) or not parts or not all(isinstance(p, str) and p in by_pattern for p in parts):
        raise fail(f"in_memory.{pattern}: expected a list of tensors of this file")
    if pattern not in by_pattern:
        raise fail(f"in_memory: {pattern!r} is not a tensor of this file")
    model, stacked = by_pattern[pattern], [by_pattern[p].per_expert for p in parts]
    rows = model.dims[1] if stacked[0] and len(model.dims) > 1 else model.dims[0]
    if len(set(stacked)) != 1 or (stacked[0] and model.dims[0].axes != ["experts"]) or len(rows.blocks) != len(parts):
        raise fail(
            f"in_memory.{pattern}: its parts must all name {{expert}} (then its first dim is experts) or none, "
            "one per row block"
        )
    return tuple(parts)


def _with_stacks(templates: list[Template], stacks: list[str], fail: Callable[[str], ArchDataError]) -> list[Template]:
    """Per-layer templates with their stack: the one their axes name, else their layer group's (a group
    belongs to one stack); a stack must have its own `layers` size."""
    group_stack: dict[str, str] = {}
    for t in templates:
        if t.per_layer and t.stack:
            if group_stack.setdefault(t.group, t.stack) != t.stack:
                raise fail(
                    f"tensors.{t.pattern}: layer group {t.group!r} has tensors of stacks {t.stack!r} and "
                    f"{group_stack[t.group]!r}"
                )
    result = []
    for t in templates:
        stack = group_stack.get(t.group, "") if t.per_layer else ""
        if t.per_layer and stack not in stacks:
            raise fail(f"tensors.{t.pattern}: its stack has no {stack}layers entry in sizes")
        result.append(Template(t.pattern, t.dims, stack))
    return result


@cache
def all_architectures() -> tuple[Architecture, ...]:
    archs = tuple(load_family(p) for p in data_files())
    seen: dict[str, str] = {}
    for arch in archs:
        for model_type in arch.model_types:
            if model_type in seen:
                raise ArchDataError(f"model_type {model_type!r} is claimed by {seen[model_type]} and {arch.name}")
            seen[model_type] = arch.name
    return archs


def for_model_type(model_type: str) -> Architecture | None:
    return next((a for a in all_architectures() if model_type in a.model_types), None)


def supported_model_types() -> list[str]:
    return sorted(m for a in all_architectures() for m in a.model_types)
