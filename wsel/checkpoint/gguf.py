"""GGUF (llama.cpp, Ollama) teachers, read as Hugging Face checkpoints: each tensor a `TensorInfo` under its
Hugging Face name and shape, and the teacher's config.json derived from the file's metadata. No tensor data
is read: the header is parsed, and the reader later decodes the byte ranges a selection needs (`ggml`).

How a GGUF file becomes a Hugging Face checkpoint (the facts per architecture are data, `arch/formats/gguf.json`):

- Names. The inverse of llama.cpp's own table: each Hugging Face tensor template of the architecture's wsel
  family (`arch/<family>.json`, e.g. `{p}layers.{layer}.self_attn.q_proj.weight`) is mapped to its GGUF name
  by gguf-py's `TensorNameMap` (`gguf.get_tensor_name_map`, the map convert_hf_to_gguf.py writes names with),
  as transformers' GGUF loader does with a model's state dict. A GGUF tensor with no such name is refused,
  except the few that are no Hugging Face weight (`ignore`: RoPE factor tables), noted and left out.
- Shapes are GGUF's `ne` reversed (C order); a quantized row is `ne[0]`, the last Hugging Face dim.
- Values. F32/F16/BF16 (and the other plain types) are read as they lie. Quantized tensors read as F32,
  with a `Stored` record of the GGML block type, decoded by gguf-py's numpy code (`ggml.dequantize_rows`).
  Where the converter changed values, `Stored` undoes it: llama's q/k rows, which `LlamaModel.permute` put in
  the interleaved RoPE order (`rows`), and Gemma's norm weights, stored + 1 (`offset`). Phi-3's fused q|k|v
  and gate|up stay fused, as they are in transformers' Phi3 model.
- Config. config.json keys from metadata keys (sizes, eps, RoPE base, token ids); vocab_size from the
  embedding's rows; tie_word_embeddings when there is no `output.weight`. Tokenizer metadata (the token list,
  merges, chat template) is not read: wsel copies no tokenizer from a GGUF file. Keys GGUF does not hold (e.g.
  Gemma's query_pre_attn_scalar) take transformers' defaults.

The header is walked once by wsel itself before gguf-py's `GGUFReader` parses it, so that a damaged or
hostile file is refused in one line (truncated, wrong magic, absurd counts, bytes past the end) and never
makes the reader build millions of objects.
"""

from __future__ import annotations

import json
import math
import mmap
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
from gguf import MODEL_ARCH_NAMES, GGMLQuantizationType, GGUFReader, GGUFValueType, get_tensor_name_map
from gguf.gguf_reader import ReaderField

from wsel.checkpoint import ggml
from wsel.checkpoint.header import MAX_TENSORS, Stored, TensorInfo, short_repr
from wsel.errors import ArchDataError, CheckpointError
from wsel.sources.base import Source

# Metadata values (keys, array items) a file may hold: the largest vocabularies give under 1,000,000 (Gemma 3:
# 262,144 tokens, scores and types); past this limit gguf-py would build gigabytes of small arrays.
MAX_METADATA_VALUES = 4_000_000
MAX_DIMS = 4  # GGML_MAX_DIMS
REMOTE = (
    "GGUF teachers are read from local files; download it first (hf download ORG/NAME FILE.gguf, or curl -LO URL) "
    "and pass the downloaded file's path"
)
Kind = Literal["int", "float", "window"]  # window: a sliding window size, 0 for none (config null)
_BLOCK = re.compile(r"^blk\.(?P<layer>0|[1-9][0-9]{0,8})\.(?P<rest>.+)$")


@dataclass(frozen=True)
class GgufCheckpoint:
    tensors: tuple[TensorInfo, ...]  # Hugging Face names and shapes, sorted by (start, end)
    config: dict[str, Any]  # a Hugging Face config.json for the teacher, derived from metadata
    fingerprint: bytes  # the file up to its data section (metadata and tensor table), for provenance
    architecture: str  # general.architecture
    format: str = "gguf"
    notes: tuple[str, ...] = ()  # what the file holds that the checkpoint leaves out, one line each


@dataclass(frozen=True)
class Setting:
    """One config.json key read from metadata: the first of `keys` present ({arch}: the architecture)."""

    kind: Kind
    keys: tuple[str, ...]


@dataclass(frozen=True)
class GgufArch:
    """What llama.cpp's converter made of one Hugging Face architecture (one entry of gguf.json)."""

    name: str  # general.architecture
    model_type: str
    hf_class: str
    names: dict[str, str]  # GGUF name (`blk.{layer}.attn_q.weight`) -> Hugging Face name template
    permuted: dict[str, tuple[str, ...]]  # GGUF tensor (`attn_q`) -> metadata keys of its head count
    offsets: dict[str, float]  # GGUF name suffix -> added to decoded values to undo the converter's change
    config: dict[str, Setting]  # config.json key -> where its value is (the common ones, then this arch's)
    flags: dict[str, str]  # config.json key -> true when a tensor name ends with this
    ignore: dict[str, str]  # GGUF tensor -> why it is no Hugging Face weight
    required: tuple[str, ...]  # config.json keys a file must give


# ------------------------------------------------------------------------------------------- the data file


def _data(*parts: str) -> Traversable:
    where = resources.files("wsel")  # never `wsel.arch`: the file formats do not import the architecture code
    for part in ("arch", *parts):
        where = where.joinpath(part)
    return where


def _document(path: Traversable) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ArchDataError(
            f"{path}: cannot read: {e}; this installation of wsel is incomplete: reinstall wsel"
        ) from None


def _object(path: Traversable, where: str, value: Any, fields: dict[str, type]) -> dict[str, Any]:
    if not isinstance(value, dict) or set(value) != set(fields):
        got = sorted(value) if isinstance(value, dict) else type(value).__name__
        raise ArchDataError(f"{path}: {where}: expected the fields {sorted(fields)}, got {got}")
    for key, kind in fields.items():
        if not isinstance(value[key], kind):
            raise ArchDataError(f"{path}: {where}.{key}: expected {kind.__name__}")
    return value


def _strings(path: Traversable, where: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ArchDataError(f"{path}: {where}: expected a non-empty list of strings")
    return tuple(value)


def _settings(path: Traversable, where: str, value: dict[str, Any]) -> dict[str, Setting]:
    settings = {}
    for key, entry in value.items():
        entry = _object(path, f"{where}.{key}", entry, {"type": str, "keys": list})
        if entry["type"] not in ("int", "float", "window"):
            raise ArchDataError(f"{path}: {where}.{key}.type: expected int, float or window")
        settings[key] = Setting(cast(Kind, entry["type"]), _strings(path, f"{where}.{key}.keys", entry["keys"]))
    return settings


_ARCH_FIELDS: dict[str, type] = {
    "doc": str,
    "model_type": str,
    "class": str,
    "family": str,
    "prefix": str,
    "permuted": dict,
    "offsets": dict,
    "config": dict,
    "flags": dict,
    "ignore": dict,
}


@cache
def architectures() -> dict[str, GgufArch]:
    """The GGUF architectures wsel reads, from `arch/formats/gguf.json`, validated strictly."""
    path = _data("formats", "gguf.json")
    doc = _object(
        path, "gguf.json", _document(path), {"doc": str, "config": dict, "required": list, "architectures": dict}
    )
    common = _settings(path, "config", doc["config"])
    required = _strings(path, "required", doc["required"])
    found = {}
    for name, entry in doc["architectures"].items():
        where = f"architectures.{name}"
        entry = _object(path, where, entry, _ARCH_FIELDS)
        if name not in _ARCH_IDS:
            raise ArchDataError(f"{path}: {where}: gguf-py knows no architecture {name!r}")
        permuted = {k: _strings(path, f"{where}.permuted.{k}", v) for k, v in entry["permuted"].items()}
        offsets = entry["offsets"]
        if not all(type(v) is float for v in offsets.values()):
            raise ArchDataError(f"{path}: {where}.offsets: expected numbers")
        for key in ("flags", "ignore"):
            if not all(isinstance(v, str) for v in entry[key].values()):
                raise ArchDataError(f"{path}: {where}.{key}: expected strings")
        found[name] = GgufArch(
            name=name,
            model_type=entry["model_type"],
            hf_class=entry["class"],
            names=_name_map(name, entry["family"], entry["prefix"], f"{path}: {where}"),
            permuted=permuted,
            offsets=dict(offsets),
            config=common | _settings(path, f"{where}.config", entry["config"]),
            flags=dict(entry["flags"]),
            ignore=dict(entry["ignore"]),
            required=required,
        )
    return found


_ARCH_IDS = {name: arch for arch, name in MODEL_ARCH_NAMES.items()}


def _name_map(arch: str, family: str, prefix: str, where: str) -> dict[str, str]:
    """GGUF name -> Hugging Face name template, for the tensors of the family that GGUF has."""
    path = _data(f"{family}.json")
    doc = _document(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("tensors"), dict):
        raise ArchDataError(f"{where}: family {family!r} ({path}) has no tensor templates")
    table = get_tensor_name_map(_ARCH_IDS[arch], 2)  # two blocks: enough to see where the block index goes
    names: dict[str, str] = {}
    for template in doc["tensors"]:
        hf = template.replace("{p}", prefix)
        base, _, suffix = hf.rpartition(".")
        if "{layer}" in base:
            first, second = (table.get_name(base.replace("{layer}", str(i))) for i in (0, 1))
            if first is None:
                continue
            if not first.startswith("blk.0.") or second != "blk.1." + first[6:]:
                raise ArchDataError(f"{where}: {hf} maps to {first} and {second}, not blk.{{layer}}.NAME")
            gguf_name = "blk.{layer}." + first[6:]
        else:
            mapped = table.get_name(base)
            if mapped is None:
                continue
            gguf_name = mapped
        key = f"{gguf_name}.{suffix}"
        if names.setdefault(key, hf) != hf:
            raise ArchDataError(f"{where}: {names[key]} and {hf} both map to {key}")
    return names


# -------------------------------------------------------------------------------------- the header walk

_SCALAR_BYTES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}  # GGUFValueType -> size
_STRING, _ARRAY = 8, 9
_GGML_TYPES = {t.value: t.name for t in GGMLQuantizationType}


class _Bad(Exception):
    """A problem found while walking the header (the message, after the file's name)."""


@dataclass
class _Walk:
    """The header's layout, checked: offsets in bounds, counts within limits, types known."""

    view: mmap.mmap
    size: int
    pos: int = 0
    values: int = 0
    alignment: int = 32  # GGUF_DEFAULT_ALIGNMENT, unless general.alignment says otherwise

    def take(self, n: int) -> int:
        if n > self.size - self.pos:
            raise _Bad(
                f"the GGUF header runs past the end of the file ({self.size} bytes); is it truncated? download it again"
            )
        at, self.pos = self.pos, self.pos + n
        return at

    def u32(self) -> int:
        return cast(int, struct.unpack_from("<I", self.view, self.take(4))[0])

    def u64(self) -> int:
        return cast(int, struct.unpack_from("<Q", self.view, self.take(8))[0])

    def string(self) -> bytes:
        length = self.u64()
        at = self.take(length)
        return self.view[at : at + length]

    def name(self, what: str, seen: set[str]) -> str:
        """A metadata key or tensor name: UTF-8, and not seen before."""
        raw = self.string()
        try:
            name = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise _Bad(f"{what} {short_repr(raw)} is not valid UTF-8") from None
        if name in seen:
            raise _Bad(f"{what} {short_repr(name)} appears twice")
        seen.add(name)
        return name

    def count(self, n: int) -> None:
        self.values += n
        if self.values > MAX_METADATA_VALUES:
            raise _Bad(f"metadata holds more than wsel's limit of {MAX_METADATA_VALUES} values")

    def value(self, key: str, kind: int, in_array: bool = False) -> None:
        if kind in _SCALAR_BYTES:
            at = self.take(_SCALAR_BYTES[kind])
            if key == "general.alignment" and kind == 4 and not in_array:
                self.alignment = cast(int, struct.unpack_from("<I", self.view, at)[0])
        elif kind == _STRING:
            self.take(self.u64())
        elif kind == _ARRAY and not in_array:
            item, n = self.u32(), self.u64()
            self.count(n)
            if item in _SCALAR_BYTES:
                self.take(n * _SCALAR_BYTES[item])
            else:
                for _ in range(n):
                    self.value(key, item, in_array=True)
        else:
            raise _Bad(f"metadata {short_repr(key)} has value type {kind}, which GGUF does not define")


def _walk(view: mmap.mmap, size: int) -> int:
    """Check the header from the file's bytes; return where the data section starts. Raises _Bad."""
    walk = _Walk(view, size)
    if size < 4 or view[:4] != b"GGUF":
        raise _Bad(f"not a GGUF file (it starts {short_repr(bytes(view[:4]))}, not b'GGUF')")
    walk.take(4)
    version = walk.u32()
    if version & 0xFFFF == 0 and version:  # as gguf-py tells: a version written in the other byte order
        raise _Bad(
            "a big-endian GGUF file; wsel reads little-endian ones: convert a copy with gguf-convert-endian COPY little"
        )
    if version not in (2, 3):
        raise _Bad(f"GGUF version {version}; wsel reads versions 2 and 3 (convert it again with a current llama.cpp)")
    tensors, keys = walk.u64(), walk.u64()
    if tensors > MAX_TENSORS:
        raise _Bad(f"header lists {tensors} tensors, more than wsel's limit of {MAX_TENSORS}")
    walk.count(keys)
    keys_seen: set[str] = set()
    names_seen: set[str] = set()
    for _ in range(keys):
        key = walk.name("metadata key", keys_seen)
        walk.value(key, walk.u32())
    if walk.alignment <= 0 or walk.alignment & (walk.alignment - 1):
        raise _Bad(f"general.alignment {walk.alignment} is not a power of two")
    table = []
    for _ in range(tensors):
        name = walk.name("tensor name", names_seen)
        ndim = walk.u32()
        if not 1 <= ndim <= MAX_DIMS:
            raise _Bad(f"tensor {short_repr(name)} has {ndim} dims; GGUF tensors have 1 to {MAX_DIMS}")
        dims = [walk.u64() for _ in range(ndim)]
        kind, offset = walk.u32(), walk.u64()
        table.append((name, dims, kind, offset))
    start = -(-walk.pos // walk.alignment) * walk.alignment
    spans = [(_span(name, dims, kind, offset, start, size, walk.alignment), name) for name, dims, kind, offset in table]
    spans.sort()
    for ((_, end), before), ((begin, _), name) in zip(spans, spans[1:], strict=False):
        if begin < end:
            raise _Bad(f"tensor {short_repr(name)} overlaps tensor {short_repr(before)}")
    return start


def _span(name: str, dims: list[int], kind: int, offset: int, data: int, size: int, alignment: int) -> tuple[int, int]:
    """The absolute byte range of one tensor, checked."""
    quant = _GGML_TYPES.get(kind)
    if quant is None:
        raise _Bad(f"tensor {short_repr(name)} has GGML type {kind}, which gguf-py does not know")
    elements, block_bytes = ggml.block(quant)
    if dims[0] % elements:
        raise _Bad(
            f"tensor {short_repr(name)}: {quant} rows of {dims[0]} elements are not whole {elements}-element blocks"
        )
    numel = 1
    for d in dims:
        numel *= d
    if offset % alignment:
        raise _Bad(f"tensor {short_repr(name)} starts at data offset {offset}, not a multiple of {alignment}")
    start = data + offset
    end = start + numel // elements * block_bytes
    if end > size:
        raise _Bad(
            f"tensor {short_repr(name)} lies at bytes {start}..{end}, past the end of the file ({size} bytes); "
            "is it truncated? download it again"
        )
    return start, end


# ------------------------------------------------------------------------------------------------ reading


def read_gguf(source: Source) -> GgufCheckpoint:
    """The tensors of a local GGUF file under their Hugging Face names, and the teacher's config.json. Raises
    CheckpointError (`<file>: <problem and fix>`, one line) for anything wrong with the file."""

    def fail(problem: str) -> CheckpointError:
        return CheckpointError(f"{source}: {problem}")

    path = source.local_path
    if path is None:
        raise fail(REMOTE)
    with source.open() as handle:  # refuses what is not a regular file
        size = handle.size
    try:
        data_start, fingerprint = _header(path, size)
        reader = GGUFReader(path)
    except _Bad as e:
        raise fail(str(e)) from None
    except (ValueError, KeyError, IndexError, TypeError, OverflowError) as e:  # what gguf-py still refuses
        raise fail(f"not a readable GGUF file ({type(e).__name__}: {short_repr(str(e))}); download it again") from None
    except OSError as e:
        raise fail(f"cannot read: {e.strerror or e}") from None
    if reader.data_offset != data_start:
        raise fail(f"gguf-py finds the data at byte {reader.data_offset}, wsel at {data_start}: a damaged header")
    return _Reading(source, reader, fail).checkpoint(fingerprint)


def _header(path: Path, size: int) -> tuple[int, bytes]:
    if size == 0:
        raise _Bad("file is empty, not GGUF; download it again")
    with open(path, "rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as view:
        start = _walk(view, size)
        return start, bytes(view[: min(start, size)])


class _Reading:
    """One GGUF file being turned into Hugging Face tensors and a config."""

    def __init__(self, source: Source, reader: GGUFReader, fail: Callable[[str], CheckpointError]) -> None:
        self.source, self.reader, self.fail = source, reader, fail
        self.names = {t.name for t in reader.tensors}
        arch = self.text("general.architecture")
        known = architectures()
        supported = f"wsel reads {', '.join(sorted(known))} GGUF files"
        if arch is None:
            raise fail(f"metadata has no general.architecture; {supported}")
        if arch not in known:
            raise fail(f"GGUF architecture {short_repr(arch)} is not supported: {supported}")
        self.arch = known[arch]
        self.notes: list[str] = []

    # metadata

    def scalar(self, key: str) -> int | float | bool | str | None:
        """A metadata value (floats stored as float32 as the shortest decimal that reads back the same)."""
        found: ReaderField | None = self.reader.fields.get(key)
        if found is None:
            return None
        kind = found.types[0] if found.types else None
        if kind == GGUFValueType.ARRAY or kind is None:
            raise self.fail(f"metadata {key} is an array, expected one value")
        if kind == GGUFValueType.STRING:
            try:
                return str(found.contents())
            except UnicodeDecodeError:
                raise self.fail(f"metadata {key} is not valid UTF-8") from None
        value = found.parts[found.data[0]][0]
        if kind == GGUFValueType.FLOAT32:
            return float(str(np.float32(value)))
        if kind == GGUFValueType.FLOAT64:
            return float(value)
        if kind == GGUFValueType.BOOL:
            return bool(value)
        return int(value)

    def text(self, key: str) -> str | None:
        value = self.scalar(key)
        if value is not None and not isinstance(value, str):
            raise self.fail(f"metadata {key} is {short_repr(value)}, expected a string")
        return value

    def setting(self, setting: Setting) -> tuple[str, int | float | None] | None:
        """(metadata key, value) of the first of the setting's keys present, checked, or None."""
        for template in setting.keys:
            key = template.replace("{arch}", self.arch.name)
            value = self.scalar(key)
            if value is None:
                continue
            number = value if isinstance(value, int | float) and not isinstance(value, bool) else None
            if setting.kind == "float" and number is not None and np.isfinite(number):
                return key, float(number)
            if setting.kind != "float" and isinstance(number, int) and number >= 0:
                return key, None if setting.kind == "window" and number == 0 else number
            expected = "a finite number" if setting.kind == "float" else "a whole number >= 0"
            raise self.fail(f"metadata {key} is {short_repr(value)}, expected {expected}")
        return None

    def config(self, embedding_rows: int | None) -> dict[str, Any]:
        arch = self.arch
        config: dict[str, Any] = {"architectures": [arch.hf_class], "model_type": arch.model_type}
        for name, setting in arch.config.items():
            found = self.setting(setting)
            if found is not None:
                config[name] = found[1]
        for name in arch.required:
            key = arch.config[name].keys[0].replace("{arch}", arch.name)
            if name not in config:
                raise self.fail(f"metadata has no {key} (config {name}); is the file complete? convert it again")
            if not config[name]:
                raise self.fail(f"metadata {key} is 0, expected a positive number")
        vocab = self.setting(Setting("int", ("{arch}.vocab_size",)))
        tokens = self.reader.fields.get("tokenizer.ggml.tokens")
        if embedding_rows is not None:  # the weights decide: Gemma 3's converter cuts the rows to the token list
            config["vocab_size"] = embedding_rows
        elif vocab is not None:
            config["vocab_size"] = vocab[1]
        elif tokens is not None:
            config["vocab_size"] = len(tokens.data)
        config["tie_word_embeddings"] = "output.weight" not in self.names
        for name, suffix in arch.flags.items():
            config[name] = any(t.endswith("." + suffix) for t in self.names)
        rotary = self.setting(Setting("int", ("{arch}.rope.dimension_count",)))
        head_dim = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
        if rotary is not None and rotary[1] and rotary[1] < head_dim:
            config["partial_rotary_factor"] = rotary[1] / head_dim
        self.rope_scaling(config)
        return config

    def rope_scaling(self, config: dict[str, Any]) -> None:
        """rope_scaling from the rope.scaling.* keys (linear and YaRN: what llama.cpp's converter writes)."""
        kind = self.text(f"{self.arch.name}.rope.scaling.type")
        factor = self.setting(Setting("float", ("{arch}.rope.scaling.factor", "{arch}.rope.scale_linear")))
        if kind is None and factor is not None and factor[0].endswith("scale_linear"):
            kind = "linear"  # the key older converters wrote
        if kind in (None, "none") or factor is None or factor[1] in (0.0, 1.0):
            return
        if kind not in ("linear", "yarn"):
            self.notes.append(f"RoPE scaling {kind!r} is not carried to config.json; give the teacher's own config")
            return
        scaling: dict[str, Any] = {"rope_type": kind, "factor": factor[1]}
        original = self.setting(Setting("int", ("{arch}.rope.scaling.original_context_length",)))
        if kind == "yarn" and original is not None:
            scaling["original_max_position_embeddings"] = original[1]
        config["rope_scaling"] = scaling

    # tensors

    def hf_name(self, name: str, layers: int) -> str | None:
        """The Hugging Face name of a GGUF tensor, None for one that is no weight (noted)."""
        if name in self.arch.ignore:
            self.notes.append(
                f"{name} is left out: {self.arch.ignore[name]}, which the derived config.json lacks; "
                "to keep it, give the teacher's own config.json"
            )
            return None
        m = _BLOCK.match(name)
        key = name if m is None else "blk.{layer}." + m["rest"]
        template = self.arch.names.get(key)
        if template is None or (m is None) == ("{layer}" in template):
            known = ", ".join(sorted(self.arch.names))
            raise self.fail(
                f"tensor {short_repr(name)} is not one wsel maps to a Hugging Face {self.arch.hf_class} tensor "
                f"(it maps {known})"
            )
        if m is None:
            return template
        if int(m["layer"]) >= layers:
            raise self.fail(
                f"tensor {short_repr(name)} is in block {m['layer']}, but {self.arch.name}.block_count is {layers}"
            )
        return template.replace("{layer}", m["layer"])

    def rows(self, name: str, count: int) -> tuple[int, ...] | None:
        """Where each Hugging Face row of a q/k tensor is stored, for an architecture whose converter permuted
        them (None for any other tensor)."""
        m = _BLOCK.match(name)
        keys = self.arch.permuted.get(m["rest"].rpartition(".")[0]) if m else None
        if keys is None:
            return None
        found = self.setting(Setting("int", keys))
        heads = found[1] if found is not None else None
        if not heads or count % (2 * heads):
            shown = keys[0].replace("{arch}", self.arch.name)
            raise self.fail(
                f"tensor {short_repr(name)}: {count} rows do not split into {shown} = {heads} heads of RoPE pairs"
            )
        return _unpermuted(count, heads)

    def checkpoint(self, fingerprint: bytes) -> GgufCheckpoint:
        embedding = next((t for t in self.reader.tensors if t.name == "token_embd.weight" and len(t.shape) == 2), None)
        config = self.config(None if embedding is None else int(embedding.shape[1]))  # ne[1]: the rows
        tensors = []
        for t in self.reader.tensors:
            name = self.hf_name(t.name, config["num_hidden_layers"])
            if name is not None:
                tensors.append(
                    self.tensor(t.name, name, t.tensor_type.name, [int(d) for d in t.shape], int(t.data_offset))
                )
        tensors.sort(key=lambda t: (t.start, t.end))
        return GgufCheckpoint(
            tensors=tuple(tensors),
            config=config,
            fingerprint=fingerprint,
            architecture=self.arch.name,
            notes=tuple(dict.fromkeys(self.notes)),
        )

    def tensor(self, gguf_name: str, name: str, quant: str, dims: list[int], start: int) -> TensorInfo:
        """One tensor: `dims` are GGUF's ne (the row first), `start` the absolute offset of its bytes."""
        shape = tuple(reversed(dims))
        elements, block_bytes = ggml.block(quant)
        end = start + math.prod(dims) // elements * block_bytes
        rows = self.rows(gguf_name, shape[0])
        offset = next((v for suffix, v in self.arch.offsets.items() if gguf_name.endswith(suffix)), None)
        order = tuple(range(len(shape)))
        if quant in ggml.SUPPORTED:
            return TensorInfo(name, "F32", shape, self.source, start, end, Stored(shape, order, quant, rows, offset))
        if quant not in ggml.PLAIN:
            raise self.fail(
                f"tensor {short_repr(gguf_name)} is {quant}, which wsel cannot dequantize (it reads "
                f"{', '.join(ggml.PLAIN)}, {', '.join(sorted(ggml.SUPPORTED))}); requantize the file with "
                "llama-quantize --allow-requantize IN.gguf OUT.gguf Q8_0"
            )
        plain = ggml.PLAIN[quant]
        if offset is not None:
            return TensorInfo(
                name, "F32", shape, self.source, start, end, Stored(shape, order, None, rows, offset, plain)
            )
        stored = None if rows is None else Stored(shape, order, rows=rows)
        return TensorInfo(name, plain, shape, self.source, start, end, stored)


@cache
def _unpermuted(count: int, heads: int) -> tuple[int, ...]:
    """rows[i]: the stored row of Hugging Face row i, for rows that `LlamaModel.permute` wrote as
    `w.reshape(heads, 2, count // heads // 2, ...).swapaxes(1, 2)`: within each head, the first half's rows
    and the second half's interleaved. Its inverse, as transformers' loader undoes it."""
    stored = np.arange(count).reshape(heads, count // heads // 2, 2).swapaxes(1, 2).reshape(count)
    return tuple(int(i) for i in stored)
