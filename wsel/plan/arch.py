"""Planning with architecture data: student tensors derived from a Hugging Face config.json.

The teacher's tensors are matched to the family's templates and checked against the teacher's
config; the student's tensors are the same templates at the student's sizes, and every dim is
selected through the one AxisSelector, so each axis has one index set everywhere.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from wsel.arch import REQUIRED_SIZES, Architecture, Template
from wsel.axes import base_axis, kind_of, stack_of
from wsel.checkpoint.header import TensorInfo
from wsel.checkpoint.index import CheckpointIndex
from wsel.errors import PlanError, SpecError
from wsel.hfconfig import apply_sets, derivations, first_value, is_key, read_sizes, size_keys
from wsel.hffolder import FolderFiles, follow_layer_map, student_config_json, with_dtype
from wsel.layers import LayerMap, compact_ranges, group_strategy, make_layer_map
from wsel.options import PlanOptions
from wsel.plan.base import Planner, cast_name
from wsel.plan.model import ExcludedTensor, Plan, WrittenTensor
from wsel.plan.sizes import SizeCheck, Sizes
from wsel.selector import AxisSelector
from wsel.spec import ConfigStudent, StudentTensor

V = TypeVar("V")
# (template pattern, layer or None, expert or None) → teacher tensor
TeacherTensors = dict[tuple[str, int | None, int | None], TensorInfo]


class ArchPlanner(Planner):
    """One pass over a family's templates: sizes from both configs, the teacher's tensors matched, one selector."""

    def __init__(
        self,
        teacher: CheckpointIndex,
        arch: Architecture,
        student: ConfigStudent,
        options: PlanOptions,
        scores: dict[str, np.ndarray] | None = None,
    ) -> None:
        super().__init__(teacher, options, scores)
        self.arch, self.student, self.teacher_config = arch, student, student.teacher
        teacher_config = student.teacher
        where = teacher_config.source
        self.t_sizes = read_sizes(arch.sizes, teacher_config.config, where)
        self.s_sizes = read_sizes(arch.sizes, student.config, student.source)
        self.keys = size_keys(arch.sizes)  # the config key users set for each axis, for messages
        for stack in arch.stacks:  # a stack's axes, or the unqualified ones it shares
            for axis in (own if (own := stack + a) in arch.sizes else a for a in REQUIRED_SIZES):
                for who, sizes, source in (("teacher", self.t_sizes, where), ("student", self.s_sizes, student.source)):
                    if axis not in sizes:
                        raise SpecError(f"{source}: {who} config has no {self.keys[axis]} ({arch.name} needs it)")
        for sizes in (self.s_sizes, self.t_sizes):
            for head_dim in [axis for axis in sizes if base_axis(axis) == "head_dim"]:
                sizes.setdefault(stack_of(head_dim) + "v_head_dim", sizes[head_dim])  # unless the family sizes it
        rotary = None
        if arch.rope_fraction is not None:
            rotary = float(first_value(arch.rope_fraction, teacher_config.config) or 1.0)
        interleaved = bool(first_value(arch.rope_interleaved, teacher_config.config))
        t_derived, s_derived = derivations(arch.sizes, teacher_config.config), derivations(arch.sizes, student.config)
        for stack in arch.stacks:  # each stack's sizes checked on their own, by their base names
            shared = stack == arch.stacks[0]  # unqualified axes (a two-tower model's projection) once
            check = SizeCheck(
                Sizes(_view(self.t_sizes, stack, shared), _view(t_derived, stack, shared)),
                Sizes(_view(self.s_sizes, stack, shared), _view(s_derived, stack, shared)),
                _view(self.keys, stack, shared),
                student.source,
                rotary,
            )
            self.warnings += check.run()
        self._check_routing()

        self.prefix = self._detect_prefix()
        self.found = self._match_teacher()
        self.found_in_layer = {(pattern, layer) for pattern, layer, _ in self.found}
        self.layer_maps = self._layer_maps()
        self.selector = AxisSelector(
            self.t_sizes, self.s_sizes, rotary, options.attention, self.elements, rope_interleaved=interleaved
        )

    def plan(self) -> Plan:
        """Every template at the student's sizes, for every student layer, in template order."""
        arch, student_ties = self.arch, self._ties()
        written: list[WrittenTensor] = []
        excluded: list[ExcludedTensor] = []
        for template in arch.templates:
            if template.pattern in arch.tied and student_ties:
                continue  # the student reads this tensor from its tied embedding
            depth = template.stack + "layers"
            layers: list[int | None] = list(range(self.s_sizes[depth])) if template.per_layer else [None]
            for layer in layers:
                teacher_layer = None if layer is None else self.layer_maps[template.stack].teacher_index(layer)
                for expert, teacher_expert in self._experts(template, layer, teacher_layer):
                    source = self.found.get((template.pattern, teacher_layer, teacher_expert))
                    if source is None and template.pattern in arch.tied:
                        source = self.found.get((arch.tied[template.pattern], None, None))
                    if source is None and layer == 0 and arch.dense_layers is None:
                        # where layers are all built alike, a tensor the teacher keeps in its first layer only is
                        # for every layer (T5's relative_attention_bias): the student's first layer takes it too.
                        # Where layers are of two kinds (`dense_layers`: DeepSeek's dense first layer), such a
                        # tensor is that kind's, and a student layer reading an expert layer must not get it
                        source = self.found.get((template.pattern, 0, teacher_expert))
                    if source is None:
                        continue  # not part of this checkpoint (optional bias, other head, ...)
                    shape = tuple(d.size(self.s_sizes) for d in template.dims)
                    tensor = StudentTensor(template.name(self.prefix, layer, expert), shape, None)
                    if self.is_excluded(tensor.name):
                        excluded.append(self.exclusion(tensor))
                    else:
                        written.append(self._tensor(tensor, source, template, layer))

        config = student_config_json(self.student.config)
        if "" in self.layer_maps:  # per-layer lists are top-level keys: the unqualified stack's
            config = follow_layer_map(config, arch.layer_lists, self.teacher_config.config, self.layer_maps[""])
            config = self._dense_layers(config)
        config = self._derived_keys(config)
        if "prediction_layers" in self.keys and self.keys["prediction_layers"] in config:
            config[self.keys["prediction_layers"]] = 0  # the student is written without them
        config = with_dtype(config, cast_name(self.options.dtype))
        return Plan(
            teacher=self.teacher,
            student=self.student,
            # the tensors written: unlike the generic path, excluded ones are not counted (as before, for the
            # report's student.tensors)
            student_tensors=tuple(StudentTensor(t.name, t.shape, None) for t in written),
            options=self.options,
            written=self.in_storage_order(written),
            excluded=tuple(excluded),
            layer_maps=tuple(self.layer_maps.values()),
            axes=dict(sorted(self.selector.chosen.items())),
            path=arch.name,
            warnings=tuple(self.warnings),
            folder_files=FolderFiles(config, self.teacher_config.companions),
        )

    def _experts(
        self, template: Template, layer: int | None, teacher_layer: int | None
    ) -> list[tuple[int | None, int | None]]:
        """(student expert, teacher expert) for each expert a per-expert template is written for: the layer's
        kept experts (its `experts[i]` selection), in order; none where the teacher layer has no experts (a
        dense layer); `(None, None)` for every other template."""
        if not template.per_expert:
            return [(None, None)]
        if (template.pattern, teacher_layer) not in self.found_in_layer:
            return []
        kept = self.selector.axis("experts", layer).indices()
        return [(j, int(e)) for j, e in enumerate(kept)]

    def _check_routing(self) -> None:
        """A mixture-of-experts student routes each token to `experts_per_token` of its experts: no more than it
        has; routing in groups (DeepSeek), to that many of the experts in the groups it chooses first."""
        sizes, keys = self.s_sizes, self.keys
        for count, of in (("experts_per_token", "experts"), ("expert_groups_per_token", "expert_groups")):
            if count in sizes and of in sizes and sizes[count] > sizes[of]:
                fix = f"pass --set {keys[count]}={sizes[of]} or less"
                if sizes[count] <= self.t_sizes.get(of, 0):  # more of them is a student the teacher can give
                    fix += f", or keep {keys[of]} at {sizes[count]} or more"
                raise PlanError(
                    f"{self.student.source}: student {keys[count]} = {sizes[count]} is more than its {keys[of]} = "
                    f"{sizes[of]}; {fix}"
                )
        if all(k in sizes for k in ("experts_per_token", "experts", "expert_groups", "expert_groups_per_token")):
            reachable = sizes["expert_groups_per_token"] * (sizes["experts"] // sizes["expert_groups"])
            if sizes["experts_per_token"] > reachable:
                raise PlanError(
                    f"{self.student.source}: student {keys['experts_per_token']} = {sizes['experts_per_token']} is "
                    f"more than the {reachable} experts of the {keys['expert_groups_per_token']} = "
                    f"{sizes['expert_groups_per_token']} groups a token chooses; pass --set "
                    f"{keys['experts_per_token']}={reachable} or less, or a larger {keys['expert_groups_per_token']}"
                )

    def _derived_keys(self, config: dict[str, Any]) -> dict[str, Any]:
        """`config` with each key that restates other sizes in the teacher's config (DeepSeek's `qk_head_dim`, OPT's
        `word_embed_proj_dim` = `hidden_size`) recomputed from the student's. A value the student changed (from the
        teacher's) that disagrees is refused: the teacher's tensors have no other form (OPT's project_in)."""
        teacher = self.teacher_config.config
        for key, expression in self.arch.derived_keys.items():  # keys may be dotted: text_config.projection_size
            value, teacher_value = first_value((key,), config), first_value((key,), teacher)
            if value is None or teacher_value != first_value((expression,), teacher):
                continue  # absent, or the teacher's does not restate it: nothing known
            expected = first_value((expression,), config)
            if value == expected or expected is None:
                continue
            if value != teacher_value:
                # or the size it restates, when that is a key (DeepSeek's head_dim is its qk_rope_head_dim)
                other = f", or --set {expression}={value} ({key} follows it)" if is_key(expression) else ""
                raise PlanError(
                    f"{self.student.source}: student {key} = {value}, but {expression} = {expected} for the "
                    f"student, and the teacher's {key} restates its {expression}; pass --set {key}={expected}{other}"
                )
            config = apply_sets(config, [(key, expected)])
        return config

    def _dense_layers(self, config: dict[str, Any]) -> dict[str, Any]:
        """`config` giving a dense MLP to exactly the student layers that read a teacher layer holding one (DeepSeek's
        `first_k_dense_replace`, Qwen-MoE's `mlp_only_layers` and `decoder_sparse_step`), whatever the layer map.
        A config that already builds them is kept as it is; one left as the teacher's is rewritten (with a
        warning); one the student changed to build others is refused."""
        dense = self.arch.dense_layers
        if dense is None:
            return config
        patterns = self.arch.dense_patterns
        teacher_dense = sorted({layer for pattern, layer, _ in self.found if pattern in patterns and layer is not None})
        kept = self.layer_maps[""].kept
        # layer maps are increasing, so when the teacher's dense layers come first the student's do too
        students = [i for i, t in enumerate(kept) if t in teacher_dense]
        built = dense.built(config, len(kept))
        if built == students:
            return config
        wanted, teacher = dense.statement(students), self.teacher_config.config
        said = {k: config.get(k) for k in wanted}
        if any(said[k] != teacher.get(k) for k in wanted):  # the student stated its own
            stated = ", ".join(f"{k} = {_compact_json(v)}" for k, v in said.items())
            fix = " ".join(f"--set {shlex.quote(f'{k}={_compact_json(v)}')}" for k, v in wanted.items() if v != said[k])
            raise PlanError(
                f"{self.student.source}: student {stated} gives {_layers(built)} a dense MLP, but under "
                f"this layer map the layers that read dense teacher layers are {compact_ranges(students)}; pass {fix}"
            )
        changes = ", ".join(
            f"{k} {_compact_json(said[k])} → {_compact_json(v)}" for k, v in wanted.items() if v != said[k]
        )
        self.warnings.append(
            f"{changes}: student layers {compact_ranges(students)} read the teacher's dense layers "
            f"({compact_ranges(teacher_dense)})"
        )
        return {**config, **wanted}

    def _tensor(
        self, tensor: StudentTensor, source: TensorInfo, template: Template, layer: int | None
    ) -> WrittenTensor:
        t_sizes, s_sizes, keys = self.t_sizes, self.s_sizes, self.keys
        for dim in template.dims:
            for axis in dim.axes:
                if kind_of(axis) == "equal" and t_sizes[axis] != s_sizes[axis]:
                    fix = (
                        f"--exclude '{tensor.name}'"
                        if base_axis(axis) == "classes"
                        else f"keep {keys[axis]}={t_sizes[axis]}"
                    )
                    raise PlanError(
                        f"student tensor {tensor.name!r}: {axis} ({keys[axis]}) is {s_sizes[axis]} but the teacher's "
                        f"is {t_sizes[axis]}; this axis is never subsampled: {fix}"
                    )
        chosen = [self.selector.dim(dim, layer) for dim in template.dims]
        selections = tuple(sel for sel, _, _ in chosen)
        texts = tuple(text for _, text, _ in chosen)
        axes = tuple(label for _, _, label in chosen)
        return self.written(tensor, source, selections, axes, texts, self.arch.input_dim(template))

    def _detect_prefix(self) -> str:
        """The `{p}` under which the teacher stores its base model (`model.`, `bert.`, or none)."""

        def matches(prefix: str) -> int:
            regexes = [t.regex(prefix) for t in self.arch.templates if "{p}" in t.pattern]
            return sum(1 for name in self.teacher.tensors if any(r.match(name) for r in regexes))

        return max(self.arch.prefixes, key=matches)

    def _match_teacher(self) -> TeacherTensors:
        """Every teacher tensor → (template, layer), its shape checked against the teacher's config."""
        arch, prefix, sizes, where = self.arch, self.prefix, self.t_sizes, self.teacher_config.source
        regexes = [(t, t.regex(prefix)) for t in arch.templates]
        ignored = [Template(p, ()).regex(prefix) for p in arch.ignore]
        found: TeacherTensors = {}
        beyond = self._prediction_layers()
        for name, info in self.teacher.tensors.items():
            if any(r.match(name) for r in ignored) or beyond(name):
                continue
            match = next(((t, m) for t, r in regexes if (m := r.match(name))), None)
            if match is None and name.endswith("_scale_inv"):
                raise PlanError(
                    f"teacher tensor {name!r} is a block scale of an FP8 checkpoint; wsel copies the stored bytes "
                    "and cannot rescale FP8 blocks: convert the teacher to BF16 first (e.g. with DeepSeek's "
                    "fp8_cast_bf16.py), then select from that"
                )
            if match is None:
                raise PlanError(
                    f"teacher tensor {name!r} is not described by the {arch.name} architecture data ({arch.source}); "
                    "give the student as a shape manifest instead"
                )
            template, m = match
            layer = int(m.group("layer")) if template.per_layer else None
            depth = sizes[template.stack + "layers"] if layer is not None else 0
            if layer is not None and layer >= depth:
                raise PlanError(f"teacher tensor {name!r} is layer {layer} but {where} says {depth} layers")
            expert = int(m.group("expert")) if template.per_expert else None
            if expert is not None and "experts" not in sizes:
                raise PlanError(f"teacher tensor {name!r} is expert {expert} but {where} has no {self.keys['experts']}")
            if expert is not None and expert >= sizes["experts"]:
                raise PlanError(
                    f"teacher tensor {name!r} is expert {expert} but {where} says {sizes['experts']} experts"
                )
            missing = sorted({a for d in template.dims for a in d.axes if a not in sizes})
            if missing:
                raise PlanError(f"teacher tensor {name!r} needs {', '.join(missing)}, which {where} does not define")
            expected = tuple(d.size(sizes) for d in template.dims)
            if info.shape != expected:
                dims = ", ".join(str(d) for d in template.dims)
                raise PlanError(
                    f"teacher tensor {name!r} is {list(info.shape)} but {where} implies {list(expected)} "
                    f"({dims}); is this the teacher's config?"
                )
            found[(template.pattern, layer, expert)] = info
        return found

    def _prediction_layers(self) -> Callable[[str], bool]:
        """Whether a teacher tensor belongs to a layer stored after the model's last (DeepSeek-V3's
        multi-token-prediction layers, `num_nextn_predict_layers`): not part of the model transformers builds, so
        never read; the report notes them."""
        extra = self.t_sizes.get("prediction_layers", 0)
        if not extra or "" not in self.arch.stacks:
            return lambda name: False
        depth = self.t_sizes["layers"]
        layer = re.compile(rf"^{re.escape(self._group(''))}\.([0-9]{{1,9}})\.")
        key = self.keys["prediction_layers"]
        if any(depth <= int(m.group(1)) < depth + extra for n in self.teacher.tensors if (m := layer.match(n))):
            last = f"-{depth + extra - 1}" if extra > 1 else ""
            self.warnings.append(f"teacher layers {depth}{last} ({key}) are not layers of the model: left out")
        return lambda name: (m := layer.match(name)) is not None and depth <= int(m.group(1)) < depth + extra

    def _layer_maps(self) -> dict[str, LayerMap]:
        """Stack → its layer map, each stack's layers mapped on their own (explicit `--layers` lists: one per
        group, `;`-separated in sorted group order)."""
        groups = {stack: self._group(stack) for stack in self.arch.stacks}
        maps = {}
        for stack, group in groups.items():
            students, teachers = (
                list(range(self.s_sizes[stack + "layers"])),
                list(range(self.t_sizes[stack + "layers"])),
            )
            strategy = self.options.layers
            if len(groups) > 1:
                strategy = group_strategy(strategy, sorted(groups.values()), group)
            maps[stack] = make_layer_map(group, students, teachers, strategy)
        return maps

    def _group(self, stack: str) -> str:
        """The name of a stack's layer group in the teacher (`model.layers`, `encoder.block`)."""
        group = next((t.group for t in self.arch.templates if t.per_layer and t.stack == stack), "layers")
        return group.replace("{p}", self.prefix)

    def _ties(self) -> bool:
        """Whether the student ties its output embedding: its config says so, else the teacher's, else
        whether the teacher checkpoint lacks the tied tensor."""
        tie_key = self.arch.tie_key
        if tie_key is None:
            return False
        for config in (self.student.config, self.teacher_config.config):
            if isinstance(config.get(tie_key), bool):
                return bool(config[tie_key])
        return not any((alias, None, None) in self.found for alias in self.arch.tied)


def _view(values: dict[str, V], stack: str, shared: bool) -> dict[str, V]:
    """One stack's entries by their base names (`text.hidden` → `hidden`), with the unqualified ones if `shared`
    or the stack does not qualify them (an encoder-decoder's `hidden`, shared by both stacks)."""
    return {
        base_axis(k): v
        for k, v in values.items()
        if stack_of(k) == stack or not stack_of(k) and (shared or stack + k not in values)
    }


def _layers(indices: list[int]) -> str:
    """`layers 0-1`, `layer 2`, `no layer`."""
    return (
        f"layer {indices[0]}" if len(indices) == 1 else f"layers {compact_ranges(indices)}" if indices else "no layer"
    )


def _compact_json(value: Any) -> str:
    """A config value as `--set` takes it: `[0,2]`, `null`, `3`."""
    return json.dumps(value, separators=(",", ":"))
