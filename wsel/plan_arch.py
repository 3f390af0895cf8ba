"""Planning with architecture data: student tensors derived from a Hugging Face config.json.

The teacher's tensors are matched to the family's templates and checked against the teacher's
config; the student's tensors are the same templates at the student's sizes, and every dim is
selected through the one AxisSelector, so each axis has one index set everywhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from wsel.arch import Architecture, Template
from wsel.axes import AXIS_KINDS, EQUAL, AxisSelector, check_sizes, dim_size, dim_text
from wsel.checkpoint.header import TensorInfo
from wsel.checkpoint.index import CheckpointIndex
from wsel.errors import PlanError, SpecError
from wsel.hfconfig import first_value, read_sizes, size_keys
from wsel.layers import LayerMap, make_layer_map
from wsel.plan import Plan, PlanOptions, TensorPlan, element_strategy, is_excluded, order, tensor_plan
from wsel.spec import StudentSpec, StudentTensor

# Files of a Hugging Face model folder that describe the tokenizer and generation, copied as they are.
COMPANION_FILES = (
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "spiece.model",
    "chat_template.jinja",
    "chat_template.json",
    "preprocessor_config.json",
)


def build_arch_plan(
    teacher: CheckpointIndex,
    arch: Architecture,
    teacher_config: dict[str, Any],
    student: StudentSpec,
    options: PlanOptions,
    teacher_config_source: str,
    scores: dict[str, np.ndarray] | None = None,
) -> Plan:
    """The Plan for a student given as a config.json of a family wsel has data for."""
    assert student.config is not None
    t_sizes = read_sizes(arch.sizes, teacher_config, teacher_config_source)
    s_sizes = read_sizes(arch.sizes, student.config, student.source)
    keys = size_keys(arch.sizes)
    for axis in ("hidden", "layers", "heads", "kv_heads", "head_dim"):
        for who, sizes, where in (("teacher", t_sizes, teacher_config_source), ("student", s_sizes, student.source)):
            if axis not in sizes:
                raise SpecError(f"{where}: {who} config has no {keys[axis]} ({arch.name} needs it)")
    s_sizes["v_head_dim"], t_sizes["v_head_dim"] = s_sizes["head_dim"], t_sizes["head_dim"]
    check_sizes({a: t_sizes[a] for a in t_sizes if a in s_sizes}, s_sizes, keys)

    prefix = _detect_prefix(teacher, arch)
    found = _match_teacher(teacher, arch, prefix, t_sizes, teacher_config_source)
    layer_map = _layer_map(arch, prefix, t_sizes["layers"], s_sizes["layers"], options.layers)
    rotary = None
    if arch.rope_fraction is not None:
        rotary = float(first_value(arch.rope_fraction, teacher_config) or 1.0)
    selector = AxisSelector(t_sizes, s_sizes, rotary, options.attention, element_strategy(options, scores))
    student_ties = _ties(arch, student.config, teacher_config, found, prefix)

    planned: list[TensorPlan] = []
    excluded: list[StudentTensor] = []
    warnings: list[str] = []
    for template in arch.templates:
        if template.pattern in arch.tied and student_ties:
            continue  # the student reads this tensor from its tied embedding
        layers: list[int | None] = list(range(s_sizes["layers"])) if template.per_layer else [None]
        for layer in layers:
            teacher_layer = None if layer is None else layer_map.teacher_index(layer)
            source = found.get((template.pattern, teacher_layer))
            if source is None and template.pattern in arch.tied:
                source = found.get((arch.tied[template.pattern], None))
            if source is None:
                continue  # not part of this checkpoint (optional bias, other head, ...)
            shape = tuple(dim_size(d, s_sizes) for d in template.dims)
            tensor = StudentTensor(template.name(prefix, layer), shape, None)
            if is_excluded(tensor.name, options.exclude):
                excluded.append(tensor)
                continue
            planned.append(
                _plan(arch, tensor, source, template, layer, selector, t_sizes, s_sizes, keys, options, warnings)
            )

    config = student_config_json(arch, teacher_config, student.config, layer_map)
    return Plan(
        teacher,
        StudentSpec(student.source, student.kind, tuple(StudentTensor(p.name, p.shape, None) for p in planned)),
        options,
        order(teacher, planned, excluded),
        (layer_map,),
        tuple(warnings),
        path=arch.name,
        axes=dict(sorted(selector.chosen.items())),
        student_config=config,
        copy_files=companion_files(teacher.folder),
    )


def _plan(
    arch: Architecture,
    tensor: StudentTensor,
    source: TensorInfo,
    template: Template,
    layer: int | None,
    selector: AxisSelector,
    t_sizes: dict[str, int],
    s_sizes: dict[str, int],
    keys: dict[str, str],
    options: PlanOptions,
    warnings: list[str],
) -> TensorPlan:
    for dim in template.dims:
        for axis in (a for block in dim for a in block if not a.isdigit()):
            if AXIS_KINDS[axis] == EQUAL and t_sizes[axis] != s_sizes[axis]:
                fix = f"--exclude '{tensor.name}'" if axis == "classes" else f"keep {keys[axis]}={t_sizes[axis]}"
                raise PlanError(
                    f"student tensor {tensor.name!r}: {axis} ({keys[axis]}) is {s_sizes[axis]} but the teacher's "
                    f"is {t_sizes[axis]}; this axis is never subsampled: {fix}"
                )
    chosen = [selector.dim(dim, layer) for dim in template.dims]
    selections = tuple(sel for sel, _, _ in chosen)
    texts = tuple(text for _, text, _ in chosen)
    axes = tuple(label for _, _, label in chosen)
    return tensor_plan(tensor, source, selections, axes, options, warnings, texts, arch.input_dim(template))


def _detect_prefix(teacher: CheckpointIndex, arch: Architecture) -> str:
    """The `{p}` under which the teacher stores its base model (`model.`, `bert.`, or none)."""

    def matches(prefix: str) -> int:
        regexes = [t.regex(prefix) for t in arch.templates if "{p}" in t.pattern]
        return sum(1 for name in teacher.tensors if any(r.match(name) for r in regexes))

    return max(arch.prefixes, key=matches)


def _match_teacher(
    teacher: CheckpointIndex, arch: Architecture, prefix: str, sizes: dict[str, int], where: str
) -> dict[tuple[str, int | None], TensorInfo]:
    """Every teacher tensor → (template, layer), its shape checked against the teacher's config."""
    regexes = [(t, t.regex(prefix)) for t in arch.templates]
    ignored = [Template(p, ()).regex(prefix) for p in arch.ignore]
    found: dict[tuple[str, int | None], TensorInfo] = {}
    for name, info in teacher.tensors.items():
        if any(r.match(name) for r in ignored):
            continue
        match = next(((t, m) for t, r in regexes if (m := r.match(name))), None)
        if match is None:
            raise PlanError(
                f"teacher tensor {name!r} is not described by the {arch.name} architecture data ({arch.source.name}); "
                "give the student as a shape manifest instead"
            )
        template, m = match
        layer = int(m.group("layer")) if template.per_layer else None
        if layer is not None and layer >= sizes["layers"]:
            raise PlanError(f"teacher tensor {name!r} is layer {layer} but {where} says {sizes['layers']} layers")
        missing = sorted({a for d in template.dims for b in d for a in b if not a.isdigit() and a not in sizes})
        if missing:
            raise PlanError(f"teacher tensor {name!r} needs {', '.join(missing)}, which {where} does not define")
        expected = tuple(dim_size(d, sizes) for d in template.dims)
        if info.shape != expected:
            raise PlanError(
                f"teacher tensor {name!r} is {list(info.shape)} but {where} implies {list(expected)} "
                f"({', '.join(dim_text(d) for d in template.dims)}); is this the teacher's config?"
            )
        found[(template.pattern, layer)] = info
    return found


def _layer_map(arch: Architecture, prefix: str, teacher_layers: int, student_layers: int, strategy: str) -> LayerMap:
    pattern = next((t.pattern for t in arch.templates if t.per_layer), "layers.{layer}.")
    group = pattern.replace("{p}", prefix).split(".{layer}")[0]
    return make_layer_map(group, list(range(student_layers)), list(range(teacher_layers)), strategy)


def _ties(
    arch: Architecture,
    student_config: dict[str, Any],
    teacher_config: dict[str, Any],
    found: dict[tuple[str, int | None], TensorInfo],
    prefix: str,
) -> bool:
    """Whether the student ties its output embedding: its config says so, else the teacher's, else
    whether the teacher checkpoint lacks the tied tensor."""
    if arch.tie_key is None:
        return False
    for config in (student_config, teacher_config):
        if isinstance(config.get(arch.tie_key), bool):
            return bool(config[arch.tie_key])
    return not any((alias, None) in found for alias in arch.tied)


def student_config_json(
    arch: Architecture, teacher_config: dict[str, Any], student_config: dict[str, Any], layer_map: LayerMap
) -> dict[str, Any]:
    """The student's config.json: as given, with per-layer lists following the layer map."""
    config = student_config_json_generic(student_config)
    teacher_layers = layer_map.teacher_count
    for key in arch.layer_lists:
        values = teacher_config.get(key)
        if (
            isinstance(values, list)
            and len(values) == teacher_layers
            and len(config.get(key) or []) != len(layer_map.mapping)
        ):
            config[key] = [values[t] for _, t in layer_map.mapping]
    return config


def student_config_json_generic(student_config: dict[str, Any]) -> dict[str, Any]:
    """The config as given, less the teacher's hub name (the student is not that model)."""
    return {k: v for k, v in student_config.items() if k != "_name_or_path"}


def companion_files(folder: Path) -> tuple[Path, ...]:
    return tuple(folder / name for name in COMPANION_FILES if (folder / name).is_file())
