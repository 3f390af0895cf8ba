"""The generic path for a config.json student of a family wsel has no data for.

Student shapes come from the teacher's: a dim equal to a teacher config value (e.g. hidden_size
4096) takes the student's value for the same key (2048), and each layer group keeps as many
layers as the key holding the teacher's depth says. Then the paper's rule applies to every dim.

Nothing is written that the student's own config contradicts where wsel can tell: a dim equal to several
config values in the teacher (`d_model` and `num_heads*d_kv`) must take one size in the student, a layer
group takes its depth from the key whose name fits it (`num_decoder_layers` for `decoder.block`), and
per-layer config lists (`layer_types`) follow the kept layers. What was checked is listed in the Plan's
`checks`; what could not be is said there too.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from wsel.checkpoint.index import CheckpointIndex
from wsel.errors import PlanError, SpecError
from wsel.hfconfig import apply_sets
from wsel.hffolder import FolderFiles, student_config_json, with_dtype
from wsel.layers import LayerMap, find_layer
from wsel.options import PlanOptions
from wsel.plan.base import cast_name
from wsel.plan.generic import GenericPlanner
from wsel.plan.model import Plan
from wsel.spec import ConfigStudent, StudentTensor

# Words that name one stack of a multi-stack model, in config keys and tensor names alike.
_STACK_WORDS = frozenset({"encoder", "decoder", "text", "vision", "audio", "image", "speech", "language"})


@dataclass(frozen=True)
class SizeExpr:
    """A size the config states or implies: one key (`d_model`) or heads times a per-head size
    (`num_heads*d_kv`, `num_key_value_heads*hidden_size/num_attention_heads`), in teacher and student."""

    text: str
    teacher: int
    student: int | None  # None: not a whole number in the student (then no dim may follow it)
    keys: tuple[str, ...]  # the keys it reads, for fixes


class ConfigPlanner:
    """Derives the student's tensors from config values, checks them against the student's config, then
    plans them on the generic path."""

    def __init__(
        self,
        teacher: CheckpointIndex,
        student: ConfigStudent,
        options: PlanOptions,
        scores: dict[str, np.ndarray] | None = None,
    ) -> None:
        self.teacher, self.student, self.options, self.scores = teacher, student, options, scores
        self.where = student.source
        t_config, s_config = flatten(student.teacher.config), flatten(student.config)
        self.t_config, self.s_config = t_config, s_config
        self.model_type = student.teacher.config.get("model_type")
        depth_keys = {k for k in t_config if "layer" in k.rsplit(".", 1)[-1]}  # depth, not a width
        self.depth_keys = depth_keys
        self.widths = _size_map(t_config, s_config, exclude=depth_keys, where=self.where)
        self.expressions = _expressions(t_config, s_config, exclude=depth_keys)
        self.checks: list[str] = []

    def plan(self) -> Plan:
        mapped = ", ".join(text for _, text in sorted(self.widths.items()))
        note = (
            f"no architecture data for model_type {self.model_type!r}: generic path, the paper's "
            f"rule on every dim; dims mapped by config values: {mapped or 'none'}"
        )
        tensors = self._derived_tensors()
        generic = GenericPlanner(self.teacher, self.options, self.scores)
        plan = generic.plan(self.student, tensors, None, notes=(note,))
        config = self._follow_layers(student_config_json(self.student.config), plan.layer_maps)
        config = with_dtype(config, cast_name(self.options.dtype))
        folder_files = FolderFiles(config, self.student.teacher.companions)
        return dataclasses.replace(plan, folder_files=folder_files, checks=tuple(self.checks))

    # ------------------------------------------------------------------------------------- tensors

    def _derived_tensors(self) -> tuple[StudentTensor, ...]:
        """The teacher's tensors (by name), cut to the student's depth, each dim's size checked against the
        student's config and mapped by it."""
        group_sizes: dict[str, int] = {}
        for name in self.teacher.tensors:
            ref = find_layer(name)
            if ref is not None:
                group_sizes[ref.group] = max(group_sizes.get(ref.group, 0), ref.index + 1)
        depths = {group: self._depth(group, count) for group, count in sorted(group_sizes.items())}
        tensors, stated, unstated = [], 0, 0
        for info in sorted(self.teacher.tensors.values(), key=lambda t: t.name):
            ref = find_layer(info.name)
            if ref is not None and ref.index >= depths[ref.group]:
                continue
            shape = []
            for dim, size in enumerate(info.shape):
                student_size = self._dim(info.name, dim, size)
                stated, unstated = (stated + 1, unstated) if student_size is not None else (stated, unstated + 1)
                shape.append(size if student_size is None else student_size)
            tensors.append(StudentTensor(info.name, tuple(shape), None))
        self.checks.insert(
            0,
            f"dims: {stated} of {stated + unstated} equal a config value (or heads × a per-head size) and take "
            f"the student's; {unstated} are stated by no config value and are kept at the teacher's size, unchecked",
        )
        return tuple(tensors)

    def _dim(self, name: str, dim: int, size: int) -> int | None:
        """The student's size of a teacher dim the config states (None when no config value equals it).
        Raises PlanError when the values that state it disagree in the student."""
        words = _words(name)
        matches = [e for e in self.expressions if e.teacher == size and _stack(e.text) <= words]
        if not matches:
            return None
        values = {e.student for e in matches}
        if len(values) == 1 and None not in values:
            return values.pop()
        texts = " and ".join(e.text for e in matches)
        told = " and ".join("a fraction" if e.student is None else str(e.student) for e in matches)
        raise PlanError(
            f"{self.where}: student tensor {name!r} dim {dim} is {size} in the teacher, as are {texts}, but the "
            f"student makes them {told}; {_fix(matches, self.s_config)}, or give a shape manifest"
        )

    def _depth(self, group: str, count: int) -> int:
        """How many layers of `group` (of `count` in the teacher) the student keeps: the depth key whose name
        fits the group best (`num_decoder_layers` for `decoder.block`). Raises PlanError when none can be
        told apart or the student is deeper."""
        fits: list[tuple[int, str]] = []
        group_words = _words(group)
        for key in sorted(self.depth_keys):
            if self.t_config.get(key) != count or not _is_size(self.s_config.get(key)):
                continue
            qualifiers = _stack(key)
            if qualifiers <= group_words:
                fits.append((len(qualifiers), key))
        if not fits:
            self.checks.append(f"layers: {group} keeps all {count} (no config key gives its depth: unchecked)")
            return count
        best = max(n for n, _ in fits)
        keys = [k for n, k in fits if n == best]
        values = {self.s_config[k] for k in keys}
        named = " and ".join(f"{k} = {self.s_config[k]}" for k in keys)
        if len(values) > 1:
            raise PlanError(
                f"{self.where}: layer group {group!r} has {count} layers in the teacher, as {' and '.join(keys)} "
                f"say, but the student sets {named}; set them alike"
            )
        depth = int(values.pop())
        if depth > count:
            raise PlanError(
                f"{self.where}: student {keys[0]} is {depth} but the teacher has {count} layers in {group!r}; "
                f"a student cannot be deeper than its teacher: pass --set {keys[0]}={count} or less"
            )
        self.checks.append(f"layers: {group} keeps {depth} of {count} ({named})")
        return depth

    # ------------------------------------------------------------------------------------- config

    def _follow_layers(self, config: dict[str, Any], layer_maps: tuple[LayerMap, ...]) -> dict[str, Any]:
        """`config` with its per-layer lists (a key naming `layer` whose list is as long as a layer group in the
        teacher, left so by the student) cut to the kept layers of the group whose name the key fits."""
        config = dict(config)
        for key, values in sorted(self.t_config.items()):
            if not isinstance(values, list) or "layer" not in key.rsplit(".", 1)[-1]:
                continue
            if self.s_config.get(key) != values:
                continue  # the student gave its own list
            maps = [m for m in layer_maps if m.teacher_count == len(values) and _stack(key) <= _words(m.group)]
            kept = {tuple(m.kept) for m in maps}
            if len(kept) > 1:
                groups = " and ".join(repr(m.group) for m in maps)
                raise PlanError(
                    f"{self.where}: config key {key} has one entry per layer of {groups}, which keep different "
                    f"layers; --set {key} to the student's list"
                )
            if kept:
                (layers,) = kept
                config = apply_sets(config, [(key, [values[i] for i in layers])])
                self.checks.append(f"config: {key} follows the kept layers ({len(layers)} of {len(values)})")
        return config


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config objects (`text_config`) as dotted keys (`text_config.hidden_size`), with the values."""
    result: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            result |= flatten(value, f"{prefix}{key}.")
        else:
            result[f"{prefix}{key}"] = value
    return result


def _words(name: str) -> set[str]:
    """The words of a key or tensor name, `visual` read as `vision` (CLIP's visual_projection)."""
    return {_ALIASES.get(w, w) for w in re.split(r"[._*/]", name) if w}


_ALIASES = {"visual": "vision"}


def _stack(key: str) -> set[str]:
    """The words of a config key that name one stack of a model (`text` in text_config.hidden_size, `decoder`
    in decoder_ffn_dim): the key sizes only tensors whose names hold them too."""
    return _words(key) & _STACK_WORDS


def _is_size(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _is_size_key(key: str) -> bool:
    """A key that may state a size: not a token id (`eos_token_id`, `pad_token_id`), which only looks like one."""
    last = key.rsplit(".", 1)[-1]
    return not (last.endswith("_id") or last.endswith("_ids"))


def _size_map(teacher: dict[str, Any], student: dict[str, Any], exclude: set[str], where: str) -> dict[int, str]:
    """`24→12 (hidden_size)` by teacher value, for every whole-number key the student changes (keys of one
    teacher value that different stacks change differently, `text_config.hidden_size` and
    `vision_config.hidden_size`, each). Raises SpecError when two keys of one stack and one value differ."""
    changed: dict[int, list[tuple[int, str]]] = {}
    for key, t_value in teacher.items():
        s_value = student.get(key)
        if key in exclude or not _is_size_key(key) or not _is_size(t_value) or not _is_size(s_value):
            continue
        if not isinstance(s_value, int) or t_value == s_value:
            continue
        for other_value, other in changed.get(t_value, []):
            if other_value != s_value and _stack(other) == _stack(key):
                raise SpecError(
                    f"{where}: {other} and {key} are both {t_value} in the teacher but differ in the student; "
                    "without architecture data wsel cannot tell their dims apart: give a shape manifest"
                )
        changed.setdefault(t_value, []).append((s_value, key))
    result = {}
    for t_value, entries in changed.items():
        by_student: dict[int, list[str]] = {}
        for s_value, key in entries:
            by_student.setdefault(s_value, []).append(key)
        result[t_value] = ", ".join(f"{t_value}→{s} ({', '.join(keys)})" for s, keys in sorted(by_student.items()))
    return result


def _expressions(teacher: dict[str, Any], student: dict[str, Any], exclude: set[str]) -> list[SizeExpr]:
    """Every size the config states (each whole-number key) or implies by heads: a head count times a per-head
    size, stated (`num_heads*d_kv`) or derived from a model width (`num_key_value_heads*hidden_size/
    num_attention_heads`), keys of one config object together."""
    keys = [
        k
        for k, v in teacher.items()
        if k not in exclude and _is_size_key(k) and _is_size(v) and (_is_size(student.get(k)) or k not in student)
    ]

    def value(config: dict[str, Any], key: str) -> int:
        return int(config.get(key, teacher[key]))

    result = [SizeExpr(k, value(teacher, k), value(student, k), (k,)) for k in keys]
    heads = [k for k in keys if _HEADS.search(_last(k))]
    for h in heads:
        parent = h.rpartition(".")[0]
        for x in (k for k in keys if k.rpartition(".")[0] == parent):
            th, sh, tx, sx = value(teacher, h), value(student, h), value(teacher, x), value(student, x)
            if _PER_HEAD.fullmatch(_last(x)):
                result.append(SizeExpr(f"{h}*{x}", th * tx, sh * sx, (h, x)))
            elif _WIDTH.fullmatch(_last(x)) and tx % th == 0:
                for h2 in heads:
                    if h2 != h and h2.rpartition(".")[0] == parent:
                        t2, s2 = value(teacher, h2), value(student, h2)
                        s_value = s2 * sx // sh if sx % sh == 0 else None
                        result.append(SizeExpr(f"{h2}*{x}/{h}", t2 * tx // th, s_value, (h2, x, h)))
    return result


_HEADS = re.compile(r"heads")  # a head count: num_heads, num_key_value_heads, encoder_attention_heads
_PER_HEAD = re.compile(r"(?:\w+_)?(?:head_dim|d_kv|kv_channels|head_size|dim_head|d_head)")  # one head's width
_WIDTH = re.compile(r"hidden_size|d_model|n_embd|embed_dim|hidden_dim|model_dim|dim|width")  # split into heads


def _last(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def _fix(matches: list[SizeExpr], student: dict[str, Any]) -> str:
    """How to make the sizes agree: a per-head size that makes heads × it a plain key's value
    (`pass --set d_kv=3`), else the sizes set alike."""
    plain = [e for e in matches if len(e.keys) == 1 and e.student is not None and e.student != e.teacher]
    for target in plain or [e for e in matches if len(e.keys) == 1]:
        for e in matches:
            if len(e.keys) != 2 or e.student == target.student:
                continue
            h, x = e.keys
            heads = int(student.get(h, 0))
            if target.student is not None and heads and target.student % heads == 0:
                return f"pass --set {x}={target.student // heads} so that {e.text} = {target.text}"
    return "set " + " and ".join(e.text for e in matches) + " alike in the student config"
