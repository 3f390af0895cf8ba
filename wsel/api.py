"""wsel as a library: what the commands do, as functions. `import wsel` re-exports these (lazily).

    import wsel

    teacher = wsel.open_teacher("Llama-3-8B/")                       # headers only
    plan = wsel.build_plan(teacher, sets={"num_hidden_layers": 16})  # every decision, nothing read yet
    stats = wsel.write_student(plan, "small/")                      # streams the selected bytes
    assert wsel.verify_student(teacher, "small/").ok                 # bit for bit

Every function raises a `wsel.WselError` subclass with a one-line message for bad input.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wsel.checkpoint.index import CheckpointIndex, open_checkpoint
from wsel.checkpoint.output import DEFAULT_MAX_SHARD_SIZE
from wsel.checkpoint.reader import Read
from wsel.errors import PlanError, SpecError
from wsel.hfconfig import load_config, parse_config, parse_set
from wsel.hffolder import CONFIG_FILE, TeacherConfig, companion_files
from wsel.options import PlanOptions
from wsel.plan.dispatch import make_plan
from wsel.plan.model import Plan
from wsel.plan.search import StudentSearch
from wsel.sources import DEFAULT_CONNECTIONS
from wsel.spec import TensorListStudent, load_spec, student_from_config
from wsel.stats import ProgressCallback, Stats
from wsel.verify import VerifyResult

if TYPE_CHECKING:
    import torch
    from torch import nn

    from wsel.into import PlanFrom

PathArg = str | os.PathLike[str]
Checkpoint = PathArg | CheckpointIndex  # a path, or a checkpoint already opened


def open_teacher(
    location: PathArg, *, connections: int = DEFAULT_CONNECTIONS, key: str | None = None
) -> CheckpointIndex:
    """A checkpoint (a `.safetensors` file, a Hugging Face folder, single-file or sharded, an index file; a
    PyTorch zip checkpoint, read without running its pickle, whose nested state dict `key` names when it holds
    several; a GGUF file), as every tensor's name, dtype, shape and byte range. Reads headers only.

    Remote: `hf://ORG/NAME[@REVISION][/FOLDER]` (or `ORG/NAME` when no such local path exists) for the
    Hugging Face Hub, an `http(s)://` URL of a .safetensors or index file; later reads fetch only the byte
    ranges they need, `connections` requests in flight."""
    return open_checkpoint(location, connections=connections, key=key)


def build_plan(
    teacher: Checkpoint,
    student: PathArg | None = None,
    *,
    sets: Iterable[str] | Mapping[str, Any] = (),
    teacher_config: PathArg | None = None,
    options: PlanOptions | None = None,
) -> Plan:
    """Plan the student: for every student tensor, its teacher tensor and the indices kept on each dim.

    `student` is a Hugging Face config.json, a shape manifest `.json`, a template `.safetensors` (its header
    only) or `-` for standard input. `sets` overrides keys of a config.json student (`{"hidden_size": 512}`,
    or `["hidden_size=512"]` as the command line gives them); without `student`, the student is the
    teacher's config.json with these overrides. `teacher_config` names the teacher's config.json when it is
    not in the teacher's folder. Reads headers and configs only (and, for `elements="magnitude"`, the
    teacher's weights, streaming)."""
    index = teacher if isinstance(teacher, CheckpointIndex) else open_checkpoint(teacher)
    options = options or PlanOptions()
    if isinstance(sets, str):  # one "key=value" is a list of one, not a list of characters
        raise TypeError(f"sets={sets!r}: give a dict of overrides, or a list of 'key=value' strings")
    if student is None and not sets:
        raise SpecError(
            "no student given: pass --student-config, or --set KEY=VALUE to derive it from the teacher's config"
        )
    given = load_spec(os.fspath(student)) if student is not None else None
    if isinstance(given, TensorListStudent):
        if sets:
            raise SpecError(f"{given.source}: --set applies to Hugging Face config.json students, not a {given.kind}")
        return make_plan(index, given, options)

    t_config = TeacherConfig(*_teacher_config(index, teacher_config), companion_files(index.folder))
    overrides = list(sets.items()) if isinstance(sets, Mapping) else [parse_set(s) for s in sets]
    return make_plan(index, student_from_config(given, t_config, overrides), options)


def search_students(
    teacher: Checkpoint,
    target: str | int,
    *,
    sets: Iterable[str] | Mapping[str, Any] = (),
    teacher_config: PathArg | None = None,
    options: PlanOptions | None = None,
    multiple_of: int = 64,
    count: int = 5,
) -> StudentSearch:
    """The `count` best student shapes near a parameter budget (`target`: `1.5B`, `500M`, `25%` of the
    teacher's, or a count), by the rule in README.md ("Choosing the student by a budget"); sizes in `sets` are
    kept, the free ones searched. Each candidate is planned as `build_plan` would plan it, and counted
    exactly. Use one: `build_plan(teacher, sets={**sets, **search.candidates[0].sets})`."""
    from wsel.arch import for_model_type, supported_model_types
    from wsel.hfconfig import read_sizes
    from wsel.plan.search import parameters, parse_budget, search, settable_keys

    index = teacher if isinstance(teacher, CheckpointIndex) else open_checkpoint(teacher)
    options = options or PlanOptions()
    if multiple_of < 1:
        raise PlanError(f"--multiple-of {multiple_of}: expected a positive width step such as 64")
    t_config = TeacherConfig(*_teacher_config(index, teacher_config), companion_files(index.folder))
    model_type = t_config.config.get("model_type")
    arch = for_model_type(model_type) if isinstance(model_type, str) else None
    if arch is None:
        raise PlanError(
            f"{t_config.source}: --target-params needs architecture data, and model_type {model_type!r} has none "
            f"(it covers {', '.join(supported_model_types())}); give the student's sizes with --set instead"
        )
    if arch.stacks != ("",):  # the search sets one hidden, heads and depth; each stack has its own
        stacks = ", ".join(stack.rstrip(".") for stack in arch.stacks)
        raise PlanError(
            f"{t_config.source}: --target-params searches the sizes of one stack, and {arch.name} has several "
            f"({stacks}); give each stack's sizes with --set instead"
        )
    overrides = list(sets.items()) if isinstance(sets, Mapping) else [parse_set(s) for s in sets]

    def plan_for(sizes: dict[str, int]) -> Plan:
        return make_plan(index, student_from_config(None, t_config, [*overrides, *sizes.items()]), options)

    keys = settable_keys(arch.sizes)
    teacher_sizes = read_sizes(arch.sizes, t_config.config, t_config.source)
    fixed = {axis: value for axis, key in keys.items() for k, value in overrides if k == key}
    for axis, value in fixed.items():
        if type(value) is not int or value < 1:
            raise PlanError(f"--set {keys[axis]}={value!r}: expected a whole number of at least 1")
    teacher_plan = plan_for({})
    # the search counts every layer as one shape, and sets no latent ranks
    two_kinds = arch.dense_layers is not None and any(axis.startswith("dense_mlp[") for axis in teacher_plan.axes)
    if two_kinds or "kv_lora" in arch.sizes:
        dense = arch.dense_layers
        named = ", ".join(k for k in (dense.key, dense.sparse_step) if k) if dense else ""
        why = f"layers of two kinds: {named}" if two_kinds else "latent ranks"
        raise PlanError(
            f"{t_config.source}: --target-params does not search {arch.name} students ({why}); give the student's "
            "sizes with --set instead"
        )
    teacher_parameters = parameters(teacher_plan)
    budget = parse_budget(str(target), teacher_parameters)
    head_dim_settable = "head_dim" in keys
    return search(plan_for, keys, teacher_sizes, fixed, budget, teacher_parameters, multiple_of, head_dim_settable,
                  count)  # fmt: skip


def _teacher_config(teacher: CheckpointIndex, path: PathArg | None) -> tuple[dict[str, Any], str]:
    """The teacher's config.json (`path`, else the one in the teacher's folder) and where it was read."""
    where = os.fspath(path) if path is not None else teacher.folder.where(CONFIG_FILE)
    if path is None and teacher.config is not None:  # a GGUF file's own metadata, not a folder's config.json
        return dict(teacher.config), f"{teacher.location} (its GGUF metadata)"
    # exists(), not is_file(): a FIFO or a device is no missing file; the bounded reader refuses it by name
    if path is not None and not Path(path).exists() or path is None and not teacher.folder.has(CONFIG_FILE):
        raise SpecError(
            f"{where}: teacher config.json not found; pass --teacher-config PATH "
            "(a config.json student needs the teacher's config)"
        )
    if path is not None:
        return load_config(Path(path)), where
    return parse_config(teacher.folder.read_small(CONFIG_FILE), where), where


def write_student(
    plan: Plan,
    output: PathArg,
    *,
    force: bool = False,
    max_shard_size: int = DEFAULT_MAX_SHARD_SIZE,
    on_progress: ProgressCallback | None = None,
    folder: bool | None = None,
) -> Stats:
    """Write the planned student: `NAME.safetensors` for one file, else a folder (`model.safetensors`, or
    shards and an index, plus config.json and tokenizer files for a config.json student); `folder=True`, or a
    str ending in `/` (a Path cannot keep the slash), always writes a folder. Nothing under `output` changes
    unless the whole student was written; an existing checkpoint is replaced only with `force`.
    `on_progress` is called with each number of bytes written."""
    from wsel import execute

    if folder is None and isinstance(output, str) and output.endswith(("/", os.sep)):
        folder = True
    return execute.run(plan, Path(output), force=force, max_shard_size=max_shard_size, on_progress=on_progress,
                       folder=folder)  # fmt: skip


def verify_student(teacher: Checkpoint, student: Checkpoint) -> VerifyResult:
    """Check, streaming, that every tensor of a student checkpoint written by wsel equals its recorded
    selection of `teacher`, bit for bit. `.ok` is the answer; `.mismatches` names the first differences."""
    from wsel.verify import verify

    teacher_index = teacher if isinstance(teacher, CheckpointIndex) else open_checkpoint(teacher)
    student_index = student if isinstance(student, CheckpointIndex) else open_checkpoint(student)
    return verify(teacher_index, student_index)


def plan_report(plan: Plan, stats: Stats | None = None, command: str | None = None) -> dict[str, Any]:
    """The report as plain JSON-able data (the `--json` document; keys documented in README.md)."""
    from wsel import report

    return report.plan_report(plan, stats, command or ("init" if stats is not None else "inspect"))


def teacher_report(teacher: Checkpoint) -> dict[str, Any]:
    """What a checkpoint holds (`wsel inspect` without a student), and for a wsel output how it was made."""
    from wsel import report

    return report.teacher_report(teacher if isinstance(teacher, CheckpointIndex) else open_checkpoint(teacher))


def read_schedule(plan: Plan) -> list[Read]:
    """The teacher byte ranges (file, offset, length) that `write_student(plan, ...)` reads, in order."""
    from wsel import execute

    return list(execute.read_schedule(plan))


def select_into(
    model: nn.Module,
    teacher: Checkpoint,
    *,
    plan_from: PlanFrom = "auto",
    teacher_config: PathArg | None = None,
    on_progress: ProgressCallback | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Fill `model`'s parameters and persistent buffers (its `state_dict()`: the student) with their selection
    of `teacher`, streaming into the model's own storage; no file is written. Returns the report: the
    `plan_report` document plus `module`, `selected`, `copied`, `left_to_init`, `tied`, `cast` and
    `provenance` (README.md, "Students that are model objects").

    `options` are `PlanOptions`' fields (`exclude=["lm_head.weight"]`, `layers="uniform"`, ...). The model is
    planned from its Hugging Face config (`model.config`) when it has one and the teacher has a config.json
    (`plan_from="auto"`; `"config"` insists), as `wsel init --student-config` plans it; otherwise
    (`"state_dict"`) from its tensor names and shapes, as a shape manifest is. Each tensor gets its own
    dtype. A meta-device model is materialized on the CPU and what is not selected is initialized by the
    model's `init_weights()` (else `reset_parameters()`); without either it is refused, unchanged."""
    from wsel import into

    index = teacher if isinstance(teacher, CheckpointIndex) else open_checkpoint(teacher)
    plan_options = PlanOptions(**options)

    def config() -> TeacherConfig | None:
        if teacher_config is None and index.config is None and not index.folder.has(CONFIG_FILE):
            return None
        return TeacherConfig(*_teacher_config(index, teacher_config))

    return into.select_into(model, index, plan_options, plan_from, config, on_progress)


def select_state_dict(
    teacher: Checkpoint,
    shapes: Mapping[str, Sequence[int] | torch.Tensor],
    *,
    on_progress: ProgressCallback | None = None,
    **options: Any,
) -> dict[str, torch.Tensor]:
    """The selected tensors of a student given as `{name: shape}`, or as a model's `state_dict()` (each tensor
    then gives its shape and dtype), as new CPU tensors, for callers who load them their own way. Planned as a
    shape manifest is; `options` are `PlanOptions`' fields. Excluded names are left out; names sharing a
    storage in a state_dict share one tensor. Streams: memory holds the result and one block."""
    from wsel import into

    index = teacher if isinstance(teacher, CheckpointIndex) else open_checkpoint(teacher)
    return into.select_state_dict(index, shapes, PlanOptions(**options), on_progress)
