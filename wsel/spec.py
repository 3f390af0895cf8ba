"""The student: names, shapes and (optionally) dtypes of every tensor it needs.

Three forms are read here:
  1. a shape manifest, JSON `{"name": [dim, ...], ...}` (a value may also be
     `{"shape": [...], "dtype": "BF16"}`), from a file or standard input (`-`);
  2. a template checkpoint `*.safetensors`: only its header is read;
  3. a Hugging Face config.json (a JSON object with `model_type`): tensors are derived later,
     from architecture data and the teacher (see `wsel.plan`). Without a file, `--set KEY=VALUE`
     derives the student's config.json from the teacher's (`student_from_config`).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, TextIO

from wsel.checkpoint.dtypes import DTYPES
from wsel.checkpoint.header import MAX_TENSORS, name_problem, read_header
from wsel.errors import CheckpointError, SpecError
from wsel.hfconfig import apply_sets, derive_config
from wsel.hffolder import TeacherConfig
from wsel.sources.base import MAX_SMALL_FILE_BYTES
from wsel.sources.local import read_small_file

STDIN = "-"


@dataclass(frozen=True)
class StudentTensor:
    name: str
    shape: tuple[int, ...]
    dtype: str | None  # None: take the teacher tensor's dtype


@dataclass(frozen=True)
class TensorListStudent:
    """A student given tensor by tensor: a shape manifest, or the header of a template checkpoint."""

    source: str  # the path the user gave, or "<stdin>"
    kind: Literal["manifest", "template"]
    tensors: tuple[StudentTensor, ...]


@dataclass(frozen=True)
class StudentConfig:
    """A student config.json as read, before it is matched to its teacher (see `student_from_config`)."""

    source: str  # the path the user gave, or "<stdin>"
    config: dict[str, Any]


@dataclass(frozen=True)
class ConfigStudent:
    """A student given as a Hugging Face config.json, with the teacher's config it is read against: its
    tensors follow from the teacher's."""

    source: str  # the path the user gave, "<stdin>", or how it was derived from the teacher's config
    config: dict[str, Any]
    teacher: TeacherConfig
    kind: ClassVar[Literal["hf-config"]] = "hf-config"


Student = TensorListStudent | ConfigStudent


def load_spec(source: str, stdin: TextIO | None = None) -> TensorListStudent | StudentConfig:
    """Read a student config given as a path or `-` for standard input."""
    if source == STDIN:
        text = (stdin or sys.stdin).read(MAX_SMALL_FILE_BYTES + 1)  # bounded, like a file
        if len(text) > MAX_SMALL_FILE_BYTES:
            raise SpecError(f"<stdin>: student config is longer than the {MAX_SMALL_FILE_BYTES}-byte limit")
        return parse_manifest(text, "<stdin>")
    path = Path(source)
    if not path.exists():
        raise SpecError(f"{path}: student config not found")
    if path.is_dir():
        raise SpecError(f"{path}: is a directory; give a shape manifest .json or a template .safetensors")
    if path.suffix == ".safetensors":
        return _from_template(path)
    try:
        text = read_small_file(path, "a student config").decode("utf-8")
    except CheckpointError as e:  # a FIFO, a device, too large, unreadable
        raise SpecError(str(e)) from None
    except UnicodeDecodeError as e:
        raise SpecError(f"{path}: cannot read the student config: {e}") from None
    return parse_manifest(text, str(path))


def _from_template(path: Path) -> TensorListStudent:
    try:
        header = read_header(path)
    except CheckpointError as e:
        raise SpecError(f"student template {e}") from None
    if not header.tensors:
        raise SpecError(f"{path}: student template holds no tensors")
    # Header order is storage order; names sorted keep the spec independent of how it was saved.
    tensors = sorted((StudentTensor(t.name, t.shape, t.dtype) for t in header.tensors), key=lambda t: t.name)
    return TensorListStudent(str(path), "template", tuple(tensors))


def parse_manifest(text: str, source: str) -> TensorListStudent | StudentConfig:
    """Parse a JSON shape manifest. Raises SpecError naming the source and the bad entry."""
    try:
        doc = json.loads(text, object_pairs_hook=_reject_repeated_names)
    except (ValueError, RecursionError) as e:  # ValueError: JSONDecodeError, or an integer too long to parse
        raise SpecError(f"{source}: student config is not valid JSON: {e}") from None
    except _Repeated as e:
        raise SpecError(f"{source}: tensor {e.args[0]!r} is named twice") from None
    if not isinstance(doc, dict):
        raise SpecError(f"{source}: expected a JSON object mapping tensor names to shapes")
    if "model_type" in doc:
        return StudentConfig(source, doc)
    if not doc:
        raise SpecError(f"{source}: student config names no tensors")
    if len(doc) > MAX_TENSORS:
        raise SpecError(f"{source}: student config lists {len(doc)} tensors, more than wsel's limit of {MAX_TENSORS}")
    for name in doc:
        problem = name_problem(name)
        if problem is not None:
            raise SpecError(f"{source}: {problem}")
    return TensorListStudent(source, "manifest", tuple(_manifest_entry(source, k, v) for k, v in doc.items()))


class _Repeated(Exception):
    pass


def _reject_repeated_names(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _Repeated(key)
        seen[key] = value
    return seen


def _manifest_entry(source: str, name: str, value: Any) -> StudentTensor:
    dtype = None
    shape = value
    if isinstance(value, dict):
        unknown = sorted(set(value) - {"shape", "dtype"})
        if unknown or "shape" not in value:
            raise SpecError(
                f'{source}: tensor {name!r}: expected [dims] or {{"shape": [dims], "dtype": ...}}, '
                f"got keys {sorted(value)}"
            )
        shape, dtype = value["shape"], value.get("dtype")
        if dtype is not None and dtype not in DTYPES:
            raise SpecError(f"{source}: tensor {name!r}: unknown dtype {dtype!r}; use one of {', '.join(DTYPES)}")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise SpecError(f"{source}: tensor {name!r}: shape {shape!r} is not a list of non-negative integers")
    return StudentTensor(name, tuple(shape), dtype)


def student_from_config(
    given: StudentConfig | None, teacher: TeacherConfig, sets: list[tuple[str, Any]]
) -> ConfigStudent:
    """The student's config.json: the one given with `--set` overrides applied, or (none given) the
    teacher's with the overrides."""
    if given is None:
        described = " ".join(f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in sets)  # as typed
        source = f"{teacher.source} with --set {described}" if sets else teacher.source
        return ConfigStudent(source, derive_config(teacher.config, sets), teacher)
    return ConfigStudent(given.source, apply_sets(given.config, sets) if sets else given.config, teacher)
