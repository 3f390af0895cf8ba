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

The header is walked once by wsel itself (`gguf_header`) before gguf-py's `GGUFReader` parses it; the facts
per architecture are loaded by `gguf_arch`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
from gguf import GGUFReader, GGUFValueType
from gguf.gguf_reader import ReaderField

from wsel.checkpoint import ggml
from wsel.checkpoint.gguf_arch import Setting, architectures
from wsel.checkpoint.gguf_header import HeaderProblem, walk_header
from wsel.checkpoint.header import Stored, TensorInfo, short_repr
from wsel.errors import CheckpointError
from wsel.sources.base import Source

REMOTE = (
    "GGUF teachers are read from local files; download it first (hf download ORG/NAME FILE.gguf, or curl -LO URL) "
    "and pass the downloaded file's path"
)
_BLOCK = re.compile(r"^blk\.(?P<layer>0|[1-9][0-9]{0,8})\.(?P<rest>.+)$")


@dataclass(frozen=True)
class GgufCheckpoint:
    tensors: tuple[TensorInfo, ...]  # Hugging Face names and shapes, sorted by (start, end)
    config: dict[str, Any]  # a Hugging Face config.json for the teacher, derived from metadata
    fingerprint: bytes  # the file up to its data section (metadata and tensor table), for provenance
    architecture: str  # general.architecture
    format: str = "gguf"
    notes: tuple[str, ...] = ()  # what the file holds that the checkpoint leaves out, one line each


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
        data_start, fingerprint = walk_header(path, size)
        reader = GGUFReader(path)
    except HeaderProblem as e:
        raise fail(str(e)) from None
    except (ValueError, KeyError, IndexError, TypeError, OverflowError) as e:  # what gguf-py still refuses
        raise fail(f"not a readable GGUF file ({type(e).__name__}: {short_repr(str(e))}); download it again") from None
    except OSError as e:
        raise fail(f"cannot read: {e.strerror or e}") from None
    if reader.data_offset != data_start:
        raise fail(f"gguf-py finds the data at byte {reader.data_offset}, wsel at {data_start}: a damaged header")
    return _Reading(source, reader, fail).checkpoint(fingerprint)


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
