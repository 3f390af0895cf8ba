"""Students that are model objects: the selection streamed into an `nn.Module`'s own tensors, no file written.

The module's `state_dict()` (parameters and persistent buffers) is the student. It is planned as `wsel init`
plans a student: from its Hugging Face config (`model.config`) when it has one and the teacher has a
config.json (the architecture path: whole heads, GQA groups, RoPE pairs), else from its tensor names and
shapes as a shape manifest is. Each planned tensor is then read from the teacher, block by block
(`TensorReader`), cast like `--dtype` casts (`transform_chunks`) to the dtype of the tensor it fills, and its
bytes land in that tensor's storage: nothing of the teacher is held beyond one block, nothing of the student
beyond the module itself. Tensors sharing a storage (tied embeddings) are written once.

A model that holds tensors otherwise than its checkpoints store them (transformers 5 fuses each layer's
experts: `mlp.experts.gate_up_proj` [experts, gate|up, hidden]) is filled through views of those tensors under
the checkpoint names (`mlp.experts.3.up_proj.weight`: rows of expert 3), as the family's data says
(`in_memory`), when the teacher stores that form.

A model on the meta device has no storage: it is materialized on the CPU (`to_empty`, ties restored), the
tensors not selected are initialized by the model's own init (`init_weights()`, else each module's
`reset_parameters()`), then the selected ones are copied in. A meta model whose unselected tensors have
no init is refused before anything changes.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from wsel import provenance, report
from wsel.arch import Architecture, for_model_type
from wsel.checkpoint.dtypes import DTYPES
from wsel.checkpoint.index import CheckpointIndex
from wsel.checkpoint.reader import DEFAULT_BLOCK_BYTES, Chunk, TensorReader
from wsel.checkpoint.transform import transform_chunks
from wsel.checkpoint_form import checkpoint_form
from wsel.errors import CheckpointError, SpecError, WselError
from wsel.execute import read_schedule
from wsel.hffolder import TeacherConfig
from wsel.layers import compact_ranges
from wsel.options import PlanOptions
from wsel.plan.dispatch import make_plan
from wsel.plan.model import Plan, WrittenTensor
from wsel.spec import Student, StudentConfig, StudentTensor, TensorListStudent, student_from_config
from wsel.stats import ProgressCallback, Stats

PlanFrom = Literal["auto", "config", "state_dict"]
PLAN_FROM: tuple[PlanFrom, ...] = ("auto", "config", "state_dict")
Init = Literal["init_weights", "reset_parameters"]

# torch dtype → the safetensors name the plan and `transform_chunks` speak (dtypes torch lacks are left out).
_SAFETENSORS_DTYPE = {
    getattr(torch, info.torch_name): name
    for name, info in DTYPES.items()
    if info.torch_name and isinstance(getattr(torch, info.torch_name, None), torch.dtype)
}
_TORCH_DTYPE = {name: dtype for dtype, name in _SAFETENSORS_DTYPE.items()}


@dataclass(frozen=True)
class _Student:
    """A student's tensors as the caller holds them, and which names share a storage."""

    tensors: dict[str, torch.Tensor]  # name → the tensor to fill (a module's own, or a state_dict's), in order
    aliases: dict[str, str]  # a name sharing its storage with another → the one planned (its canonical name)

    @property
    def planned(self) -> list[str]:
        return [name for name in self.tensors if name not in self.aliases]


def select_into(
    model: nn.Module,
    teacher: CheckpointIndex,
    options: PlanOptions,
    plan_from: PlanFrom,
    teacher_config: Callable[[], TeacherConfig | None],
    on_progress: ProgressCallback | None = None,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
) -> dict[str, Any]:
    """Fill `model`'s parameters and persistent buffers with their selection of `teacher`; the report.

    `teacher_config` gives the teacher's config.json (None: it has none), asked only when the model has a
    Hugging Face config and `plan_from` allows planning from it."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model={type(model).__name__}: give a torch.nn.Module (its state_dict() is the student)")
    if plan_from not in PLAN_FROM:
        raise SpecError(f"unknown plan_from {plan_from!r}; use one of {', '.join(PLAN_FROM)}")
    started = time.perf_counter()
    name = type(model).__name__
    state = model.state_dict(keep_vars=True)
    if not state:
        raise SpecError(f"the {name} model has no parameters or persistent buffers to select")
    meta = _on_meta(model)
    config = _model_config(model)
    arch = for_model_type(config["model_type"]) if config is not None else None
    state, part_of = checkpoint_form(state, arch, teacher)
    student = _Student(dict(state), _aliases(state, teacher))
    unsaved = [n for n, _ in model.named_buffers(remove_duplicate=False) if n not in state]  # non-persistent
    plan, plan_kind = _plan_module(model, config, arch, student, teacher, options, plan_from, teacher_config)
    plan = _fit(plan, student, set(unsaved), name)
    for t in plan.written:
        _target_dtype(t.name, student.tensors[t.name])  # refused now, not after other tensors were filled
    filled = _written_into(plan, student)
    # the model's own names: a fused tensor any of whose views is not filled
    left = list(dict.fromkeys(part_of.get(n, n) for n in student.tensors if n not in filled))
    init: Init | None = None
    if meta:
        left += unsaved  # non-persistent buffers: only the model's init can compute them again
        init, calls = _init_for(model, left, set(unsaved), name)  # refuses before anything changes
        _materialize(model)
        with torch.device("cpu"):  # a caller still inside `with torch.device("meta")` gets real values too
            for call in calls:
                call()
        state, _ = checkpoint_form(model.state_dict(keep_vars=True), arch, teacher)
        student = _Student(dict(state), student.aliases)
    before = replace(plan.teacher.traffic())
    bytes_read, tensor_bytes, casts = _fill(plan, student.tensors, on_progress, block_bytes)
    traffic = plan.teacher.traffic()
    stats = Stats(
        files=(),
        tensor_bytes=tensor_bytes,
        file_bytes=0,
        bytes_read=bytes_read,
        seconds=time.perf_counter() - started,
        bytes_fetched=traffic.bytes_fetched - before.bytes_fetched,
        requests=traffic.requests - before.requests,
        retries=traffic.retries - before.retries,
    )
    doc = report.plan_report(plan, stats, "select_into")
    doc["module"] = {"class": name, "plan_from": plan_kind, "materialized": meta, "init": init}
    doc["selected"] = [t.name for t in plan.written if t.action == "select"]
    doc["copied"] = [t.name for t in plan.written if t.action == "copy"]
    doc["left_to_init"] = left
    doc["tied"] = {n: planned for n, planned in filled.items() if n != planned}
    doc["cast"] = casts
    doc["provenance"] = provenance.build(plan)
    return doc


def select_state_dict(
    teacher: CheckpointIndex,
    shapes: Mapping[str, Sequence[int] | torch.Tensor],
    options: PlanOptions,
    on_progress: ProgressCallback | None = None,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
) -> dict[str, torch.Tensor]:
    """The selected tensors of a student given as name → shape (or name → tensor: its shape and dtype, as a
    model's `state_dict()` gives them), new CPU tensors; excluded names are left out, and names sharing a
    storage in `shapes` share one tensor."""
    if not isinstance(shapes, Mapping):
        raise TypeError(f"shapes={type(shapes).__name__}: give a mapping of tensor names to shapes, or a state_dict")
    given = {name: _shape_or_tensor(name, value) for name, value in shapes.items()}
    if not given:
        raise SpecError("shapes names no tensors")
    aliases = _aliases({n: v for n, v in given.items() if isinstance(v, torch.Tensor)}, teacher)
    listed = [StudentTensor(n, _dims(v), None) for n, v in given.items() if n not in aliases]
    plan = _planned(teacher, TensorListStudent("<shapes>", "manifest", tuple(listed)), options)
    out: dict[str, torch.Tensor] = {}
    for t in plan.written:
        value = given[t.name]
        dtype = value.dtype if isinstance(value, torch.Tensor) else _TORCH_DTYPE.get(t.dtype)
        if dtype is None:
            raise SpecError(f"tensor {t.name!r}: torch has no dtype for the teacher's {t.dtype}; exclude it")
        out[t.name] = torch.empty(t.shape, dtype=dtype, device="cpu")
    _fill(plan, out, on_progress, block_bytes)
    return {n: out[aliases.get(n, n)] for n in given if aliases.get(n, n) in out}


# ------------------------------------------------------------------------------------------- the student


def _on_meta(model: nn.Module) -> bool:
    """Whether the model is on the meta device (every tensor); a model partly there is refused."""
    devices = {
        n: t.device.type for n, t in (*model.named_parameters(), *model.named_buffers()) if isinstance(t, torch.Tensor)
    }
    on_meta = sorted(n for n, d in devices.items() if d == "meta")
    if on_meta and len(on_meta) < len(devices):
        real = next(n for n, d in devices.items() if d != "meta")
        raise SpecError(
            f"tensor {on_meta[0]!r} of the model is on the meta device but {real!r} is on {devices[real]}: build the "
            "model wholly on the meta device, or wholly on a real one"
        )
    return bool(on_meta)


def _aliases(tensors: Mapping[str, torch.Tensor], teacher: CheckpointIndex) -> dict[str, str]:
    """Names whose tensor is another name's (tied weights: the same storage, offset, shape and strides) → the
    name planned: of each group, the first the teacher holds, else the first."""
    groups: dict[object, list[str]] = {}
    for name, t in tensors.items():
        groups.setdefault(_storage_key(t), []).append(name)
    aliases = {}
    for names in groups.values():
        canonical = next((n for n in names if n in teacher.tensors), names[0])
        aliases.update({n: canonical for n in names if n != canonical})
    return aliases


def _storage_key(t: torch.Tensor) -> object:
    if t.numel() == 0:
        return id(t)  # nothing stored: never tied
    # The storage's own identity (its data pointer is 0 for every tensor on the meta device).
    return (t.untyped_storage()._cdata, t.storage_offset(), tuple(t.shape), t.stride(), t.dtype)


def _model_config(model: nn.Module) -> dict[str, Any] | None:
    """A Hugging Face model's config as a config.json dict (`model.config.to_dict()`), or None. Read by its
    attributes: wsel never imports transformers."""
    config = getattr(model, "config", None)
    to_dict = getattr(config, "to_dict", None)
    if not isinstance(getattr(config, "model_type", None), str) or not callable(to_dict):
        return None
    values = to_dict()
    return values if isinstance(values, dict) and values.get("model_type") else None


def _plan_module(
    model: nn.Module,
    model_config: dict[str, Any] | None,
    arch: Architecture | None,
    student: _Student,
    teacher: CheckpointIndex,
    options: PlanOptions,
    plan_from: PlanFrom,
    teacher_config: Callable[[], TeacherConfig | None],
) -> tuple[Plan, Literal["config", "state_dict"]]:
    name = type(model).__name__
    config = model_config if plan_from != "state_dict" else None
    t_config = teacher_config() if config is not None else None
    if config is not None and t_config is not None:
        t_type = t_config.config.get("model_type")
        if config["model_type"] != t_type:
            raise SpecError(
                f"{name}.config: model_type {config['model_type']!r} differs from the teacher's {t_type!r} "
                f"({t_config.source}); pass plan_from='state_dict' to plan from the model's tensor names and shapes"
            )
        given = StudentConfig(f"{name}.config", config)
        plan = _planned(teacher, student_from_config(given, t_config, []), options)
        _check_built_as_planned(plan, student.tensors, arch, name)
        return plan, "config"
    if plan_from == "config":
        missing = "the model has no Hugging Face config" if config is None else "the teacher has no config.json"
        raise SpecError(f"plan_from='config': {missing}; pass plan_from='state_dict' to plan from its tensors")
    listed = tuple(StudentTensor(n, tuple(student.tensors[n].shape), None) for n in student.planned)
    return _planned(teacher, TensorListStudent(f"{name}.state_dict()", "manifest", listed), options), "state_dict"


def _check_built_as_planned(
    plan: Plan, model_tensors: Iterable[str], arch: Architecture | None, model_name: str
) -> None:
    """A model is built as its config says. A plan that gives other layers a dense MLP than the model has (the
    student's follow the layer map: DeepSeek's `first_k_dense_replace`, Qwen-MoE's `mlp_only_layers`) describes
    another model: refused, with the config values that build the planned one."""
    dense = arch.dense_layers if arch is not None else None
    if arch is None or dense is None:
        return
    regexes = [arch.template(p).regex(prefix) for p in sorted(arch.dense_patterns) for prefix in arch.prefixes]

    def dense_layers(names: Iterable[str]) -> list[int]:
        return sorted({int(m.group("layer")) for n in names for r in regexes if (m := r.match(n))})

    planned = dense_layers([*(t.name for t in plan.written), *(t.name for t in plan.excluded)])
    built = dense_layers(model_tensors)
    if planned != built:
        settings = ", ".join(f"{k}={json.dumps(v)}" for k, v in dense.statement(planned).items())
        raise SpecError(
            f"{model_name}: its layers with a dense MLP are {compact_ranges(built)}, but under this layer map the "
            f"student's are {compact_ranges(planned)} (those reading the teacher's); build the model with {settings}"
        )


def _planned(teacher: CheckpointIndex, student: Student, options: PlanOptions) -> Plan:
    """`make_plan`, with the command line's `--exclude 'NAME'` in messages said as this API says it, and its
    `pass --set K=V` as building the model so: a model's config is the student's."""
    try:
        return make_plan(teacher, student, options)
    except WselError as e:
        text = _EXCLUDE_FLAG.sub(lambda m: f"exclude=[{m.group(1)!r}]", str(e))
        text = _SET_FLAG.sub(
            lambda m: m.group(1) or m.group(2), text.replace("pass --set ", "build the model with --set ")
        )
        raise type(e)(text) from None


_EXCLUDE_FLAG = re.compile(r"--exclude '([^']*)'")
_SET_FLAG = re.compile(r"--set (?:'([^']*)'|(\S+))")


def _fit(plan: Plan, student: _Student, unsaved: set[str], model_name: str) -> Plan:
    """The plan checked against the model's tensors, and restricted to them. Refused: a planned tensor the
    model lacks, or holds at another shape. Said in the warnings: a planned tensor the model holds as a
    non-persistent buffer (not written: the state_dict is the student), a second name of a storage already
    written (written once), a tied name whose own teacher tensor goes unused, and a tensor of the model that
    the plan neither writes nor excludes (left as the model has it)."""
    kept: list[WrittenTensor] = []
    notes: list[str] = []
    done: dict[str, WrittenTensor] = {}  # canonical name → the planned tensor written into its storage
    fix = "pass plan_from='state_dict' to plan from the model's own tensors"
    absent = [t.name for t in plan.written if t.name not in student.tensors and t.name not in unsaved]
    if absent:
        more = f" and {len(absent) - 1} more are not tensors" if len(absent) > 1 else " is not a tensor"
        raise SpecError(f"planned tensor {absent[0]!r}{more} of the model ({model_name}); {fix}")
    for t in plan.written:
        target = student.tensors.get(t.name)
        if target is None:  # a non-persistent buffer
            notes.append(f"planned tensor {t.name!r} is a non-persistent buffer of the model: not written")
            continue
        if tuple(target.shape) != t.shape:
            raise SpecError(
                f"planned tensor {t.name!r} is {list(t.shape)} but the model's ({model_name}) is "
                f"{list(target.shape)}; {fix}"
            )
        canonical = student.aliases.get(t.name, t.name)
        first = done.get(canonical)
        if first is not None:
            notes.append(
                f"planned tensor {t.name!r} shares its storage with {first.name!r} in the model: written once, "
                f"from the teacher's {first.source.name!r}"
            )
            continue
        done[canonical] = t
        kept.append(t)
    excluded = {t.name for t in plan.excluded}
    for name in student.tensors:
        canonical = student.aliases.get(name, name)
        written = done.get(canonical)
        if written is None and name not in excluded and canonical not in excluded:
            notes.append(f"tensor {name!r} of the model is not in the {plan.path} plan: left as the model has it")
        elif written is not None and name != written.name and name in plan.teacher.tensors:
            notes.append(
                f"tensor {name!r} is tied to {written.name!r} in the model: it holds the teacher's "
                f"{written.source.name!r}, not the teacher's own {name!r}"
            )
    if not notes:
        return plan
    dropped = {t.name for t in plan.written} - {t.name for t in kept}
    return replace(
        plan,
        written=tuple(kept),
        student_tensors=tuple(t for t in plan.student_tensors if t.name not in dropped),
        warnings=(*plan.warnings, *notes),
    )


def _written_into(plan: Plan, student: _Student) -> dict[str, str]:
    """Every name of the student whose storage the plan fills → the planned name filling it."""
    by_storage = {student.aliases.get(t.name, t.name): t.name for t in plan.written}
    return {n: by_storage[c] for n in student.tensors if (c := student.aliases.get(n, n)) in by_storage}


# -------------------------------------------------------------------------------------------- meta models


def _init_for(
    model: nn.Module, left: list[str], non_persistent: set[str], model_name: str
) -> tuple[Init | None, list[Callable[[], object]]]:
    """How a meta model's unselected tensors get values, and the calls that give them: the model's
    `init_weights()`, else `reset_parameters()` of each module holding one (each once). Refuses (the model
    untouched) when some have neither."""
    if not left:
        return None, []
    init_weights = getattr(model, "init_weights", None)
    if callable(init_weights):
        return "init_weights", [init_weights]
    calls: dict[int, Callable[[], object]] = {}
    for name in left:
        owner = model.get_submodule(name.rpartition(".")[0])
        reset = getattr(owner, "reset_parameters", None)
        if not callable(reset):
            kind = "non-persistent buffer" if name in non_persistent else "tensor"
            raise SpecError(
                f"{kind} {name!r} of the meta-device {model_name} model is not selected, so it needs the model's "
                f"own init, but {type(owner).__name__} has no reset_parameters() and the model no init_weights(): "
                "build the model on a real device (its constructor initializes it)"
            )
        calls.setdefault(id(owner), reset)
    return "reset_parameters", list(calls.values())


def _materialize(model: nn.Module) -> None:
    """Storage on the CPU for every tensor of a meta model (`to_empty`), with its ties restored: `to_empty`
    gives each module its own new tensor, so one tied under two names would become two."""
    tied: dict[int, list[str]] = {}
    for name, t in (*model.named_parameters(remove_duplicate=False), *model.named_buffers(remove_duplicate=False)):
        tied.setdefault(id(t), []).append(name)
    model.to_empty(device="cpu")
    for first, *others in tied.values():
        shared = model.get_parameter(first) if _is_parameter(model, first) else model.get_buffer(first)
        for name in others:
            prefix, _, leaf = name.rpartition(".")
            setattr(model.get_submodule(prefix), leaf, shared)  # registered as the parameter or buffer it was


def _is_parameter(model: nn.Module, name: str) -> bool:
    prefix, _, leaf = name.rpartition(".")
    return leaf in model.get_submodule(prefix)._parameters


# ------------------------------------------------------------------------------------------------ copying


def _fill(
    plan: Plan, targets: Mapping[str, torch.Tensor], on_progress: ProgressCallback | None, block_bytes: int
) -> tuple[int, int, dict[str, str]]:
    """Stream each written tensor of `plan` into `targets[name]`, in the plan's (storage) order. Returns the
    teacher bytes read, the bytes filled, and the tensors cast to their target's dtype (`name: "BF16→F32"`)."""
    casts: dict[str, str] = {}
    filled = 0
    with TensorReader(block_bytes) as reader, torch.no_grad():
        reader.on_read = on_progress
        reader.expect(read_schedule(plan, block_bytes))
        for t in plan.written:
            target = targets[t.name]
            dtype = _target_dtype(t.name, target)
            chunks: Iterable[Chunk] = reader.iter_selected(t.source, t.selections)
            if t.dtype != t.source.dtype or t.scale is not None:  # --dtype, --rescale: as `wsel init` writes it
                chunks = transform_chunks(chunks, t.source.dtype, t.dtype, t.scale)
            if dtype != t.dtype:  # then as loading that file into the model converts it
                chunks = transform_chunks(chunks, t.dtype, dtype, None)
                casts[t.name] = f"{t.dtype}→{dtype}"
            filled += _copy_into(target, chunks, t.name)
        return reader.bytes_read, filled, casts


def _target_dtype(name: str, target: torch.Tensor) -> str:
    """The safetensors name of the dtype a tensor is filled in; one torch has and safetensors lacks is refused."""
    dtype = _SAFETENSORS_DTYPE.get(target.dtype)
    if dtype is None:
        raise SpecError(f"tensor {name!r} of the model is {target.dtype}, which wsel cannot fill; exclude it")
    return dtype


def _copy_into(target: torch.Tensor, chunks: Iterable[Chunk], name: str) -> int:
    """The C-order bytes of `chunks` into `target`'s storage, chunk by chunk: in place for a contiguous CPU
    tensor, else through one CPU tensor of its size, copied over at the end."""
    destination = target.detach()
    direct = destination.device.type == "cpu" and destination.is_contiguous()
    staging = destination if direct else torch.empty(destination.shape, dtype=destination.dtype, device="cpu")
    flat = staging.reshape(-1).view(torch.uint8).numpy()  # the tensor's bytes, in place  # [numel * element size]
    position = 0
    for chunk in chunks:
        data = np.frombuffer(chunk, dtype=np.uint8)
        if position + len(data) > len(flat):
            break
        flat[position : position + len(data)] = data
        position += len(data)
    if position != len(flat):  # the plan promised this size: the teacher file changed under us
        raise CheckpointError(f"tensor {name!r}: read {position} bytes for a {len(flat)}-byte tensor")
    if not direct:
        destination.copy_(staging)
    return position


def _shape_or_tensor(name: str, value: object) -> tuple[int, ...] | torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, torch.Size | tuple | list) and all(type(d) is int and d >= 0 for d in value):
        return tuple(value)
    raise SpecError(f"tensor {name!r}: shape {value!r} is not a list of non-negative integers (or a tensor)")


def _dims(value: tuple[int, ...] | torch.Tensor) -> tuple[int, ...]:
    return tuple(value.shape) if isinstance(value, torch.Tensor) else value
