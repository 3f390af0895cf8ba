"""GGUF teachers (wsel/checkpoint/gguf.py, ggml.py): every tensor of real and hand-written GGUF files, decoded
here straight from the file's bytes as a reader would (dequantize_rows, rows, offset), equals what
transformers' own GGUF loader makes of it, under the same Hugging Face name and shape; the derived config.json
has transformers' sizes; damaged and hostile files are refused in one exact line.

Hand-written files are built like llama.cpp's converter builds them: Hugging Face tensors renamed (a literal
table here, not gguf-py's map the module uses), llama's q/k rows permuted with `LlamaModel.permute`, Gemma's
norms stored + 1, quantized with `gguf.quants.quantize` (Q4_K/Q6_K and the other K-quants, which gguf-py cannot
quantize, as random blocks with finite scales)."""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest
import torch
import transformers
from conftest import smollm2_gguf
from gguf import GGMLQuantizationType as Q
from gguf.quants import dequantize, quantize

from wsel.checkpoint import ggml
from wsel.checkpoint.gguf import GgufCheckpoint, read_gguf
from wsel.checkpoint.gguf_arch import architectures
from wsel.checkpoint.header import TensorInfo
from wsel.errors import CheckpointError
from wsel.sources.httpfile import HttpFile
from wsel.sources.local import LocalFile
from wsel.sources.session import HttpSession


@pytest.fixture(scope="module")
def smollm2() -> Path:
    return smollm2_gguf()


@pytest.fixture(scope="module")
def smollm2_read(smollm2: Path) -> GgufCheckpoint:
    return read(smollm2)


# ------------------------------------------------------------------------------------------------ helpers

NUMPY = {"F32": np.float32, "F16": np.float16, "F64": np.float64}


def decode(t: TensorInfo) -> np.ndarray:
    """A tensor as float32, from its bytes in the file, the way its TensorInfo says (what the reader does)."""
    path = t.file.local_path
    assert path is not None
    raw = np.fromfile(path, dtype=np.uint8, count=t.end - t.start, offset=t.start)
    stored = t.stored
    if stored is None:
        return elements(raw, t.dtype).reshape(t.shape)
    assert stored.order == tuple(range(len(t.shape))) and stored.shape == t.shape
    if stored.quant is not None:
        ncols = stored.shape[-1]
        rows = raw.reshape(-1, ggml.row_bytes(stored.quant, ncols))
        values = ggml.dequantize_rows(rows, stored.quant, ncols).reshape(stored.shape)
    else:
        values = elements(raw, stored.dtype or t.dtype).reshape(stored.shape)
    if stored.rows is not None:
        values = values[list(stored.rows)]
    if stored.offset is not None:
        values = values + np.float32(stored.offset)
    return values


def elements(raw: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "BF16":
        return (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
    return raw.view(NUMPY[dtype]).astype(np.float32)


@functools.cache
def transformers_load(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """transformers' own reading of a GGUF file: its state dict (float32) and its config."""
    model = transformers.AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name)
    state = {k: v.float().numpy() for k, v in model.state_dict().items()}
    return state, model.config.to_dict()


def read(path: Path) -> GgufCheckpoint:
    return read_gguf(LocalFile(path))


def refusal(path: Path) -> str:
    with pytest.raises(CheckpointError) as e:
        read(path)
    message = str(e.value)
    assert "\n" not in message
    return message


def assert_as_transformers_reads(found: GgufCheckpoint, path: Path) -> None:
    """Every tensor decodes to transformers' value exactly, under its name and shape; nothing is missing."""
    state, _ = transformers_load(path)
    tied = {"lm_head.weight"} if found.config["tie_word_embeddings"] else set()
    assert sorted(t.name for t in found.tensors) == sorted(set(state) - tied)
    for t in found.tensors:
        value = decode(t)
        assert value.shape == state[t.name].shape == t.shape, t.name
        assert np.array_equal(value, state[t.name]), t.name


def assert_config_as_transformers(found: GgufCheckpoint, path: Path) -> None:
    _, theirs = transformers_load(path)
    ours = found.config
    for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads"):
        assert ours[key] == theirs[key], key
    for key in ("intermediate_size", "vocab_size", "tie_word_embeddings", "max_position_embeddings"):
        assert ours[key] == theirs[key], key
    assert ours["model_type"] == theirs["model_type"]
    # GGUF stores them as float32: ours is the shortest decimal of that float32 (1e-05), transformers' its
    # float64 image (9.999999747378752e-06); the same float32
    assert np.float32(ours["rms_norm_eps"]) == np.float32(theirs["rms_norm_eps"])
    rope = theirs["rope_parameters"]
    rope = rope.get("full_attention", rope)  # Gemma 3: one per layer type; rope.freq_base is the global one
    assert np.float32(ours["rope_theta"]) == np.float32(rope["rope_theta"])


def assert_loads_in_transformers(found: GgufCheckpoint) -> None:
    """A model built from the derived config.json has exactly the checkpoint's tensors (and a tied head)."""
    config = transformers.AutoConfig.for_model(**found.config)
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(config)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if found.config["tie_word_embeddings"]:
        shapes.pop("lm_head.weight")
    assert shapes == {t.name: t.shape for t in found.tensors}
    assert type(model).__name__ == found.config["architectures"][0]


# ------------------------------------------------------------------------------- hand-written GGUF files

H, HEADS, KV_HEADS, HEAD_DIM, FFN, VOCAB, LAYERS = 256, 4, 2, 64, 512, 64, 2  # rows of 256: K-quant blocks

# Hugging Face name (in a layer) -> GGUF name, as llama.cpp's converter writes them
LLAMA_NAMES = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}
QWEN2_NAMES = LLAMA_NAMES | {f"self_attn.{x}_proj.bias": f"attn_{x}.bias" for x in "qkv"}
QWEN3_NAMES = LLAMA_NAMES | {
    "self_attn.q_norm.weight": "attn_q_norm.weight",
    "self_attn.k_norm.weight": "attn_k_norm.weight",
}
GEMMA2_NAMES = LLAMA_NAMES | {
    "post_attention_layernorm.weight": "post_attention_norm.weight",
    "pre_feedforward_layernorm.weight": "ffn_norm.weight",
    "post_feedforward_layernorm.weight": "post_ffw_norm.weight",
}
GEMMA3_NAMES = GEMMA2_NAMES | {k: v for k, v in QWEN3_NAMES.items() if "norm" in k and "layernorm" not in k}
PHI3_NAMES = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.qkv_proj.weight": "attn_qkv.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}
TOP_NAMES = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight"}


def hf_shape(name: str, head_dim: int = HEAD_DIM) -> tuple[int, ...]:
    q, kv = HEADS * head_dim, KV_HEADS * head_dim
    shapes = {
        "embed_tokens.weight": (VOCAB, H),
        "lm_head.weight": (VOCAB, H),
        "q_proj.weight": (q, H),
        "k_proj.weight": (kv, H),
        "v_proj.weight": (kv, H),
        "q_proj.bias": (q,),
        "k_proj.bias": (kv,),
        "v_proj.bias": (kv,),
        "qkv_proj.weight": (q + 2 * kv, H),
        "o_proj.weight": (H, q),
        "gate_proj.weight": (FFN, H),
        "up_proj.weight": (FFN, H),
        "gate_up_proj.weight": (2 * FFN, H),
        "down_proj.weight": (H, FFN),
        "q_norm.weight": (head_dim,),
        "k_norm.weight": (head_dim,),
    }
    return shapes.get(".".join(name.split(".")[-2:]), (H,))  # the rest: norms


def permute(w: np.ndarray, n_head: int, n_head_kv: int | None) -> np.ndarray:
    """llama.cpp's `LlamaModel.permute` (convert_hf_to_gguf.py), verbatim but for numpy."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


# the f16 scale fields of one block, to keep random K-quant blocks finite
F16_FIELDS = {Q.Q2_K: (80, 82), Q.Q3_K: (108,), Q.Q4_K: (0, 2), Q.Q5_K: (0, 2), Q.Q6_K: (208,)}


def encoded(value: np.ndarray, qtype: Q, rng: np.random.Generator) -> np.ndarray:
    """The bytes (or elements) GGUFWriter stores for `value` as `qtype`."""
    if qtype == Q.F32:
        return value.astype(np.float32)
    if qtype == Q.F16:
        return value.astype(np.float16)
    if qtype in F16_FIELDS:  # gguf-py has no quantizer for these: random blocks, finite scales
        elements, size = gguf.GGML_QUANT_SIZES[qtype]
        blocks = rng.integers(0, 256, (value.size // elements, size), dtype=np.uint8)
        for at in F16_FIELDS[qtype]:
            scales = rng.uniform(0.001, 0.01, len(blocks)).astype(np.float16)
            blocks[:, at : at + 2] = scales.view(np.uint8).reshape(-1, 2)
        return blocks.reshape(*value.shape[:-1], -1)
    return quantize(value.astype(np.float32), qtype)


@dataclass
class Model:
    arch: str
    names: dict[str, str]
    qtype: Q = Q.F32
    tied: bool = True
    permuted: bool = False  # llama's q/k rows
    norm_plus_one: bool = False  # Gemma's norms
    head_dim: int = HEAD_DIM
    metadata: Callable[[gguf.GGUFWriter], None] = lambda w: None
    extra: dict[str, Any] = field(default_factory=dict)  # GGUF tensors added as they are: array or (bytes, type)
    hf: dict[str, np.ndarray] = field(default_factory=dict)  # filled by write(): the Hugging Face tensors


def write(path: Path, model: Model, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    hf_names = dict(TOP_NAMES) | ({} if model.tied else {"lm_head.weight": "output.weight"})
    for layer in range(LAYERS):
        hf_names |= {f"model.layers.{layer}.{k}": f"blk.{layer}.{v}" for k, v in model.names.items()}
    w = gguf.GGUFWriter(path, model.arch)
    w.add_block_count(LAYERS)
    w.add_context_length(128)
    w.add_embedding_length(H)
    w.add_feed_forward_length(FFN)
    w.add_head_count(HEADS)
    w.add_head_count_kv(KV_HEADS)
    w.add_key_length(model.head_dim)
    w.add_value_length(model.head_dim)
    w.add_rope_dimension_count(model.head_dim)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_rope_freq_base(10000.0)
    w.add_vocab_size(VOCAB)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_pad_token_id(0)
    model.metadata(w)
    for hf_name, gguf_name in hf_names.items():
        value = rng.standard_normal(hf_shape(hf_name, model.head_dim)).astype(np.float32) * 0.1
        model.hf[hf_name] = value
        if model.permuted and ".attn_q." in gguf_name:
            value = permute(value, HEADS, HEADS)
        if model.permuted and ".attn_k." in gguf_name:
            value = permute(value, HEADS, KV_HEADS)
        if model.norm_plus_one and gguf_name.endswith("norm.weight"):
            value = value + 1
        qtype = model.qtype if value.ndim == 2 else Q.F32  # as llama.cpp: 1-D tensors stay F32
        if qtype == Q.BF16:
            w.add_tensor(gguf_name, quantize(value, Q.BF16), raw_dtype=Q.BF16)
        elif qtype in (Q.F32, Q.F16):
            w.add_tensor(gguf_name, encoded(value, qtype, rng))
        else:
            w.add_tensor(gguf_name, encoded(value, qtype, rng), raw_dtype=qtype)
    for name, value in model.extra.items():
        if isinstance(value, tuple):
            w.add_tensor(name, value[0], raw_dtype=value[1])
        else:
            w.add_tensor(name, value)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def llama(qtype: Q = Q.F32, **kwargs: Any) -> Model:
    return Model("llama", LLAMA_NAMES, qtype, permuted=True, **kwargs)


def gemma2_metadata(w: gguf.GGUFWriter) -> None:
    w.add_sliding_window(64)
    w.add_attn_logit_softcapping(50.0)
    w.add_final_logit_softcapping(30.0)


MODELS = {
    "qwen2": lambda: Model("qwen2", QWEN2_NAMES, Q.Q8_0, tied=False),
    # head_dim 128: transformers' loader reads no qwen3 head_dim from GGUF (Qwen3Config's default is 128)
    "qwen3": lambda: Model("qwen3", QWEN3_NAMES, Q.Q4_0, head_dim=128),
    "phi3": lambda: Model("phi3", PHI3_NAMES, Q.Q5_1, tied=False, metadata=lambda w: w.add_sliding_window(64)),
    "gemma2": lambda: Model("gemma2", GEMMA2_NAMES, Q.Q4_K, norm_plus_one=True, metadata=gemma2_metadata),
    "gemma3": lambda: Model(
        "gemma3", GEMMA3_NAMES, Q.F16, norm_plus_one=True, metadata=lambda w: w.add_sliding_window(64)
    ),
}


# ---------------------------------------------------------------------------------------- the real file


def test_smollm2_every_tensor_as_transformers_reads_it(smollm2: Path, smollm2_read: GgufCheckpoint) -> None:
    found = smollm2_read
    assert found.architecture == "llama" and found.format == "gguf" and found.notes == ()
    assert len(found.tensors) == 272
    assert [(t.start, t.end) for t in found.tensors] == sorted((t.start, t.end) for t in found.tensors)
    kinds = {(t.dtype, t.stored.quant if t.stored else None) for t in found.tensors}
    assert kinds == {("F32", None), ("F32", "Q4_1"), ("F32", "Q8_0")}
    permuted = sorted(t.name for t in found.tensors if t.stored is not None and t.stored.rows is not None)
    assert permuted == sorted(f"model.layers.{i}.self_attn.{x}_proj.weight" for i in range(30) for x in "qk")
    assert_as_transformers_reads(found, smollm2)


def test_smollm2_config_as_transformers_derives_it(smollm2: Path, smollm2_read: GgufCheckpoint) -> None:
    found = smollm2_read
    assert_config_as_transformers(found, smollm2)
    assert found.config == {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "num_hidden_layers": 30,
        "hidden_size": 576,
        "intermediate_size": 1536,
        "num_attention_heads": 9,
        "num_key_value_heads": 3,
        "head_dim": 64,
        "rms_norm_eps": 1e-05,
        "rope_theta": 100000.0,
        "max_position_embeddings": 8192,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": 2,
        "vocab_size": 49152,
        "tie_word_embeddings": True,
        "attention_bias": False,
        "mlp_bias": False,
    }
    assert_loads_in_transformers(found)


def test_smollm2_fingerprint_is_the_header(smollm2: Path, smollm2_read: GgufCheckpoint) -> None:
    found = smollm2_read
    assert len(found.fingerprint) == 1785664 == found.tensors[0].start  # the data section's first byte
    assert found.fingerprint == smollm2.read_bytes()[: len(found.fingerprint)]


# ------------------------------------------------------------------------------------- hand-written files


@pytest.mark.parametrize(
    "qtype",
    [Q.F32, Q.F16, Q.BF16, Q.Q8_0, Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1, Q.Q2_K, Q.Q3_K, Q.Q4_K, Q.Q5_K, Q.Q6_K],
    ids=lambda q: q.name,
)
def test_llama_of_each_type_as_transformers_reads_it(qtype: Q, tmp_path: Path) -> None:
    path = write(tmp_path / "llama.gguf", llama(qtype, tied=False))
    found = read(path)
    by_name = {t.name: t for t in found.tensors}
    q = by_name["model.layers.1.self_attn.q_proj.weight"]
    plain = qtype.name in ("F32", "F16", "BF16")
    assert q.dtype == (qtype.name if plain else "F32") and q.shape == (HEADS * HEAD_DIM, H)
    assert q.stored is not None and q.stored.rows is not None  # permuted rows: a Stored record even for F32
    assert q.stored.quant == (None if plain else qtype.name)
    norm = by_name["model.layers.1.input_layernorm.weight"]
    assert (norm.dtype, norm.stored) == ("F32", None)
    assert_as_transformers_reads(found, path)
    assert_config_as_transformers(found, path)
    assert found.config["tie_word_embeddings"] is False


def test_undone_permutation_gives_back_the_hugging_face_rows(tmp_path: Path) -> None:
    """F32: the q/k tensors read back are the Hugging Face tensors the file was written from, bit for bit."""
    model = llama()
    path = write(tmp_path / "llama.gguf", model)
    for t in read(path).tensors:
        assert np.array_equal(decode(t), model.hf[t.name]), t.name
    k = next(t for t in read(path).tensors if t.name == "model.layers.0.self_attn.k_proj.weight")
    assert k.stored is not None and k.stored.rows is not None
    assert k.stored.rows[:4] == (0, 2, 4, 6) and k.stored.rows[32:34] == (1, 3)  # head 0: halves interleaved
    assert k.stored.rows[64:66] == (64, 66)  # head 1 (64 rows a head) starts again


@pytest.mark.parametrize("qtype", sorted(ggml.SUPPORTED))
def test_dequantize_rows_equals_the_whole_tensor_decoded(qtype: str) -> None:
    """Any set of whole rows decodes on its own to those rows of the whole tensor (gguf-py's decoding)."""
    rng = np.random.default_rng(1)
    elements, size = gguf.GGML_QUANT_SIZES[Q[qtype]]
    ncols = 2 * max(elements, 256)
    raw = rng.integers(0, 256, (6, ncols // elements * size), dtype=np.uint8)
    if Q[qtype] in F16_FIELDS:  # finite scales, so that NaN != NaN does not hide a difference
        raw = encoded(np.zeros((6, ncols), np.float32), Q[qtype], rng)
    with np.errstate(all="ignore"):  # random blocks: some decode to inf or NaN
        whole = dequantize(raw, Q[qtype])
    assert ggml.row_bytes(qtype, ncols) == raw.shape[1]
    rows = raw[[1, 4, 5]]
    rows.flags.writeable = False  # a reader passes views of the bytes it read
    with np.errstate(all="ignore"):
        got = ggml.dequantize_rows(rows, qtype, ncols)
    assert got.dtype == np.float32 and got.shape == (3, ncols) and got.flags.c_contiguous
    assert np.array_equal(got, whole[[1, 4, 5]], equal_nan=True)
    assert ggml.dequantize_rows(raw[:0], qtype, ncols).shape == (0, ncols)


def test_row_bytes_and_dequantize_rows_refuse_what_is_no_whole_row() -> None:
    assert ggml.row_bytes("Q4_1", 576) == 18 * 20 and ggml.row_bytes("Q6_K", 512) == 2 * 210
    assert ggml.row_bytes("F16", 3) == 6
    with pytest.raises(ValueError, match="a Q4_K row of 100 elements is not a whole number of 256-element blocks"):
        ggml.row_bytes("Q4_K", 100)
    with pytest.raises(ValueError, match="unknown GGML type 'Q9_9'"):
        ggml.row_bytes("Q9_9", 32)
    with pytest.raises(ValueError, match=r"expected uint8 rows of 34 bytes \(32 Q8_0 elements\), got uint8\(2, 33\)"):
        ggml.dequantize_rows(np.zeros((2, 33), np.uint8), "Q8_0", 32)
    with pytest.raises(ValueError, match="wsel cannot dequantize 'F16'"):
        ggml.dequantize_rows(np.zeros((2, 4), np.uint8), "F16", 2)


def test_supported_types_include_the_common_quantizations() -> None:
    assert {"Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"} <= ggml.SUPPORTED
    assert all(Q[name] in gguf.GGML_QUANT_SIZES for name in ggml.SUPPORTED)


@pytest.mark.parametrize("arch", sorted(MODELS))
def test_other_architectures_as_transformers_reads_them(arch: str, tmp_path: Path) -> None:
    model = MODELS[arch]()
    path = write(tmp_path / f"{arch}.gguf", model)
    found = read(path)
    assert found.architecture == arch
    assert all(t.stored is None or t.stored.rows is None for t in found.tensors)  # only llama's are permuted
    assert_as_transformers_reads(found, path)
    assert_config_as_transformers(found, path)
    assert_loads_in_transformers(found)
    if model.qtype == Q.F32:
        return
    q = next(t for t in found.tensors if "self_attn.q" in t.name and t.name.endswith("weight") and t.stored)
    assert q.stored is not None and q.stored.quant == (None if model.qtype == Q.F16 else model.qtype.name)


def test_gemma_norms_are_stored_plus_one(tmp_path: Path) -> None:
    """Gemma 1, which transformers' GGUF loader does not read: its norms, stored + 1, come back as they were
    (to float32 rounding: (x + 1) - 1 is not always x)."""
    model = Model("gemma", GEMMA2_NAMES | {"post_attention_layernorm.weight": "ffn_norm.weight"}, Q.F16)
    del model.names["pre_feedforward_layernorm.weight"], model.names["post_feedforward_layernorm.weight"]
    model.norm_plus_one = True
    path = write(tmp_path / "gemma.gguf", model)
    found = read(path)
    assert found.config["model_type"] == "gemma" and found.config["architectures"] == ["GemmaForCausalLM"]
    norms = [t for t in found.tensors if "norm" in t.name]
    assert len(norms) == 2 * LAYERS + 1
    for t in found.tensors:
        if t in norms:
            assert t.dtype == "F32" and t.stored is not None
            assert (t.stored.offset, t.stored.dtype, t.stored.quant) == (-1.0, "F32", None)
            np.testing.assert_allclose(decode(t), model.hf[t.name], atol=1e-7, rtol=0)
        else:
            assert t.dtype == "F16" and t.stored is None
            assert np.array_equal(decode(t), model.hf[t.name].astype(np.float16).astype(np.float32))
    assert_loads_in_transformers(found)


def test_gemma3_config(tmp_path: Path) -> None:
    found = read(write(tmp_path / "gemma3.gguf", MODELS["gemma3"]()))
    assert found.config["model_type"] == "gemma3_text" and found.config["architectures"] == ["Gemma3ForCausalLM"]
    assert found.config["sliding_window"] == 64 and found.config["head_dim"] == HEAD_DIM
    assert "partial_rotary_factor" not in found.config


def test_phi3_keeps_fused_projections_and_reads_rotary_share(tmp_path: Path) -> None:
    def metadata(w: gguf.GGUFWriter) -> None:
        w.add_sliding_window(0)  # llama.cpp's "none" (Phi-4)
        w.add_rope_scaling_orig_ctx_len(64)

    model = Model("phi3", PHI3_NAMES, tied=False, metadata=metadata)
    model.extra["rope_factors_long.weight"] = np.ones(HEAD_DIM // 2, np.float32)
    path = write(tmp_path / "phi3.gguf", model)
    found = read(path)
    names = {t.name for t in found.tensors}
    assert "model.layers.0.self_attn.qkv_proj.weight" in names and "model.layers.0.mlp.gate_up_proj.weight" in names
    assert found.config["sliding_window"] is None and found.config["original_max_position_embeddings"] == 64
    assert found.notes == (
        "rope_factors_long.weight is left out: Phi-3 long-context RoPE factors, which a Hugging Face config.json "
        "holds as rope_scaling, which the derived config.json lacks; to keep it, give the teacher's own config.json",
    )


def test_llama_config_from_metadata(tmp_path: Path) -> None:
    def metadata(w: gguf.GGUFWriter) -> None:
        w.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        w.add_rope_scaling_factor(4.0)
        w.add_rope_scaling_orig_ctx_len(32)

    model = llama(metadata=metadata)
    model.names = QWEN2_NAMES  # q/k/v biases: attention_bias
    found = read(write(tmp_path / "llama.gguf", model))
    config = found.config
    assert config["attention_bias"] is True and config["mlp_bias"] is False and config["tie_word_embeddings"] is True
    assert config["rope_scaling"] == {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32}
    assert (config["vocab_size"], config["rms_norm_eps"], config["head_dim"]) == (VOCAB, 1e-06, HEAD_DIM)
    q_bias = next(t for t in found.tensors if t.name == "model.layers.0.self_attn.q_proj.bias")
    assert q_bias.stored is not None and q_bias.stored.rows is not None  # biases are permuted too
    assert np.array_equal(decode(q_bias), model.hf[q_bias.name])


def test_llama3_rope_factors_are_noted(tmp_path: Path) -> None:
    found = read(write(tmp_path / "l.gguf", llama(extra={"rope_freqs.weight": np.ones(32, np.float32)})))
    assert "rope_freqs.weight" not in {t.name for t in found.tensors}
    assert found.notes == (
        "rope_freqs.weight is left out: Llama 3 RoPE scaling factors, which a Hugging Face config.json holds as "
        "rope_scaling, which the derived config.json lacks; to keep it, give the teacher's own config.json",
    )


def test_architecture_data_maps_every_tensor_of_the_families() -> None:
    archs = architectures()
    assert sorted(archs) == ["gemma", "gemma2", "gemma3", "llama", "phi3", "qwen2", "qwen3"]
    assert archs["llama"].names["blk.{layer}.attn_q.weight"] == "model.layers.{layer}.self_attn.q_proj.weight"
    assert (
        archs["gemma3"].names["blk.{layer}.ffn_norm.weight"] == "model.layers.{layer}.pre_feedforward_layernorm.weight"
    )
    assert archs["llama"].names["output.weight"] == "lm_head.weight"
    assert "output.weight" not in archs["gemma"].names  # Gemma's head is always the embedding
    assert [a for a in archs.values() if a.permuted] == [archs["llama"]]
    assert {a.name for a in archs.values() if a.offsets} == {"gemma", "gemma2", "gemma3"}


# ------------------------------------------------------------------------------------ damaged and hostile


@pytest.fixture
def small(tmp_path: Path) -> Path:
    return write(tmp_path / "small.gguf", llama(Q.Q8_0))


def patched(path: Path, at: int, data: bytes, name: str = "bad.gguf") -> Path:
    content = bytearray(path.read_bytes())
    content[at : at + len(data)] = data
    out = path.with_name(name)
    out.write_bytes(bytes(content))
    return out


def tensor_entry(path: Path, name: str) -> int:
    """Where a tensor's entry in the header ends its name (then: ndim u32, ne u64s, type u32, offset u64)."""
    content = path.read_bytes()
    encoded_name = struct.pack("<Q", len(name)) + name.encode()
    at = content.index(encoded_name)
    return at + len(encoded_name)


def test_truncated_header(small: Path) -> None:
    cut = small.with_name("cut.gguf")
    cut.write_bytes(small.read_bytes()[:300])
    assert refusal(cut) == (
        f"{cut}: the GGUF header runs past the end of the file (300 bytes); is it truncated? download it again"
    )


def test_truncated_data(small: Path) -> None:
    content = small.read_bytes()
    cut = small.with_name("cut.gguf")
    cut.write_bytes(content[:-100])
    last = max(read(small).tensors, key=lambda t: t.end)
    assert last.end == len(content)
    assert refusal(cut) == (
        f"{cut}: tensor 'blk.1.ffn_down.weight' lies at bytes {last.start}..{last.end}, past the end of the file "
        f"({len(content) - 100} bytes); is it truncated? download it again"
    )


def test_bad_magic_version_and_byte_order(small: Path, tmp_path: Path) -> None:
    bad = patched(small, 0, b"GGUX")
    assert refusal(bad) == f"{bad}: not a GGUF file (it starts b'GGUX', not b'GGUF')"
    bad = patched(small, 4, struct.pack("<I", 7))
    assert (
        refusal(bad)
        == f"{bad}: GGUF version 7; wsel reads versions 2 and 3 (convert it again with a current llama.cpp)"
    )
    empty = tmp_path / "empty.gguf"
    empty.write_bytes(b"")
    assert refusal(empty) == f"{empty}: file is empty, not GGUF; download it again"
    big = tmp_path / "big.gguf"
    w = gguf.GGUFWriter(big, "llama", endianess=gguf.GGUFEndian.BIG)
    w.add_block_count(1)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    assert refusal(big) == (
        f"{big}: a big-endian GGUF file; wsel reads little-endian ones: convert a copy with "
        "gguf-convert-endian COPY little"
    )


def test_tensor_offset_past_the_end(small: Path) -> None:
    at = tensor_entry(small, "blk.0.attn_norm.weight") + 4 + 8 + 4  # ndim, ne[0], type: then the offset
    bad = patched(small, at, struct.pack("<Q", 1 << 40))
    start = read(small).tensors[0].start + (1 << 40)
    assert refusal(bad) == (
        f"{bad}: tensor 'blk.0.attn_norm.weight' lies at bytes {start}..{start + H * 4}, past the end of the file "
        f"({small.stat().st_size} bytes); is it truncated? download it again"
    )
    bad = patched(small, at, struct.pack("<Q", 0))  # onto token_embd's bytes
    assert refusal(bad) == f"{bad}: tensor 'token_embd.weight' overlaps tensor 'blk.0.attn_norm.weight'"
    bad = patched(small, at, struct.pack("<Q", 4))
    assert refusal(bad) == f"{bad}: tensor 'blk.0.attn_norm.weight' starts at data offset 4, not a multiple of 32"


def test_absurd_counts_and_dims(small: Path) -> None:
    bad = patched(small, 8, struct.pack("<Q", 1 << 40))
    assert refusal(bad) == f"{bad}: header lists 1099511627776 tensors, more than wsel's limit of 1000000"
    bad = patched(small, 16, struct.pack("<Q", 1 << 60))
    assert refusal(bad) == f"{bad}: metadata holds more than wsel's limit of 4000000 values"
    at = tensor_entry(small, "blk.0.attn_norm.weight")
    bad = patched(small, at, struct.pack("<I", 9))
    assert refusal(bad) == f"{bad}: tensor 'blk.0.attn_norm.weight' has 9 dims; GGUF tensors have 1 to 4"
    bad = patched(small, at + 4 + 8, struct.pack("<I", 99))
    assert refusal(bad) == f"{bad}: tensor 'blk.0.attn_norm.weight' has GGML type 99, which gguf-py does not know"
    at = tensor_entry(small, "blk.0.attn_q.weight")
    bad = patched(small, at + 4, struct.pack("<Q", 255))
    assert (
        refusal(bad)
        == f"{bad}: tensor 'blk.0.attn_q.weight': Q8_0 rows of 255 elements are not whole 32-element blocks"
    )


def test_names_that_are_no_utf8_or_twice(small: Path) -> None:
    at = tensor_entry(small, "blk.1.attn_norm.weight") - len("blk.1.attn_norm.weight")
    bad = patched(small, at, b"\xff")
    assert refusal(bad) == f"{bad}: tensor name b'\\xfflk.1.attn_norm.weight' is not valid UTF-8"
    bad = patched(small, at, b"blk.0")
    assert refusal(bad) == f"{bad}: tensor name 'blk.0.attn_norm.weight' appears twice"
    at = small.read_bytes().index(b"llama.attention.key_length")
    bad = patched(small, at, b"llama.attention.head_count")  # as long
    assert refusal(bad) == f"{bad}: metadata key 'llama.attention.head_count' appears twice"


def test_what_only_gguf_py_refuses_is_one_line(tmp_path: Path) -> None:
    path = write(tmp_path / "a.gguf", llama(metadata=lambda w: w.add_uint64("general.alignment", 32)))
    assert refusal(path) == (
        f"{path}: not a readable GGUF file (ValueError: 'Bad type for general.alignment field'); download it again"
    )


def test_unknown_architecture(tmp_path: Path) -> None:
    path = write(tmp_path / "m.gguf", Model("mamba", LLAMA_NAMES))
    assert refusal(path) == (
        f"{path}: GGUF architecture 'mamba' is not supported: wsel reads gemma, gemma2, gemma3, llama, phi3, qwen2, "
        "qwen3 GGUF files"
    )


def test_unknown_and_misplaced_tensor_names(tmp_path: Path) -> None:
    path = write(tmp_path / "l.gguf", llama(extra={"blk.0.attn_qkv.weight": np.zeros((8, 32), np.float32)}))
    assert refusal(path) == (
        f"{path}: tensor 'blk.0.attn_qkv.weight' is not one wsel maps to a Hugging Face LlamaForCausalLM tensor "
        "(it maps blk.{layer}.attn_k.bias, blk.{layer}.attn_k.weight, blk.{layer}.attn_norm.weight, "
        "blk.{layer}.attn_output.bias, blk.{layer}.attn_output.weight, blk.{layer}.attn_q.bias, "
        "blk.{layer}.attn_q.weight, blk.{layer}.attn_v.bias, blk.{layer}.attn_v.weight, blk.{layer}.ffn_down.bias, "
        "blk.{layer}.ffn_down.weight, blk.{layer}.ffn_gate.bias, blk.{layer}.ffn_gate.weight, "
        "blk.{layer}.ffn_norm.weight, blk.{layer}.ffn_up.bias, blk.{layer}.ffn_up.weight, output.weight, "
        "output_norm.weight, token_embd.weight)"
    )
    path = write(tmp_path / "b.gguf", llama(extra={"blk.7.attn_norm.weight": np.zeros(H, np.float32)}))
    assert refusal(path) == f"{path}: tensor 'blk.7.attn_norm.weight' is in block 7, but llama.block_count is 2"
    path = write(tmp_path / "z.gguf", llama(extra={"blk.01.attn_norm.weight": np.zeros(H, np.float32)}))
    assert refusal(path).startswith(f"{path}: tensor 'blk.01.attn_norm.weight' is not one wsel maps")


def test_bad_metadata(tmp_path: Path) -> None:
    path = write(tmp_path / "s.gguf", llama(metadata=lambda w: w.add_string("llama.attention.head_count_kv", "two")))
    assert refusal(path) == f"{path}: metadata llama.attention.head_count_kv is 'two', expected a whole number >= 0"

    def drop_heads(w: gguf.GGUFWriter) -> None:
        del w.kv_data[0]["qwen2.attention.head_count"]

    path = write(tmp_path / "h.gguf", Model("qwen2", QWEN2_NAMES, metadata=drop_heads))
    assert refusal(path) == (
        f"{path}: metadata has no qwen2.attention.head_count (config num_attention_heads); is the file complete? "
        "convert it again"
    )
    path = write(tmp_path / "p.gguf", llama(metadata=lambda w: w.add_head_count_kv(3)))  # 128 k rows, 3 heads
    assert refusal(path) == (
        f"{path}: tensor 'blk.0.attn_k.weight': 128 rows do not split into llama.attention.head_count_kv = 3 heads "
        "of RoPE pairs"
    )


def test_unsupported_quantization(tmp_path: Path) -> None:
    blocks = np.zeros((VOCAB, H // 32 * 40), np.uint8)  # Q8_1 (32 elements in 40 bytes): no numpy decoder
    path = write(tmp_path / "q.gguf", llama(extra={"output.weight": (blocks, Q.Q8_1)}))
    assert refusal(path) == (
        f"{path}: tensor 'output.weight' is Q8_1, which wsel cannot dequantize (it reads F32, F16, BF16, F64, "
        f"I8, I16, I32, I64, {', '.join(sorted(ggml.SUPPORTED))}); requantize the file with llama-quantize "
        "--allow-requantize IN.gguf OUT.gguf Q8_0"
    )


def test_remote_teachers_are_refused() -> None:
    url = "https://example.com/models/m.gguf"
    source = HttpFile(url, url, HttpSession(1, {}))
    with pytest.raises(CheckpointError) as e:
        read_gguf(source)
    assert str(e.value) == (
        f"{url}: GGUF teachers are read from local files; download it first (hf download ORG/NAME FILE.gguf, or "
        "curl -LO URL) and pass the downloaded file's path"
    )


def test_damaged_headers_are_refused_in_one_line(small: Path) -> None:
    """Random bytes of the header changed: a CheckpointError or a good read, never another exception."""
    content = small.read_bytes()
    header_end = read(small).tensors[0].start
    rng = np.random.default_rng(7)
    for i in range(300):
        damaged = bytearray(content)
        for at in rng.integers(0, header_end, int(rng.integers(1, 4))):
            damaged[at] = int(rng.integers(0, 256))
        path = small.with_name(f"damaged{i % 10}.gguf")
        path.write_bytes(bytes(damaged))
        try:
            read(path)
        except CheckpointError as e:
            assert "\n" not in str(e) and str(e).startswith(f"{path}: ")
