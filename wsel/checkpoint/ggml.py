"""GGML element types: what a GGUF file's tensor bytes are, and how quantized rows decode to float32.

A quantized GGML tensor is stored row by row: each row (GGUF's `ne[0]`, the last dim in Hugging Face order)
is a run of fixed-size blocks, `block_size` elements in `type_size` bytes, and no block spans two rows. So
any set of whole rows can be read and decoded on its own, which is how wsel streams a selection.

Decoding is the `gguf` package's own numpy code (`gguf.quants.dequantize`, llama.cpp's gguf-py, the code
transformers' GGUF loader runs too), so wsel's float32 values are the ones transformers gives, bit for bit.
"""

from __future__ import annotations

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType
from gguf.quants import dequantize

# GGML types whose elements are plain little-endian numbers: the safetensors dtype that reads them as they lie.
PLAIN: dict[str, str] = {
    "F32": "F32",
    "F16": "F16",
    "BF16": "BF16",
    "F64": "F64",
    "I8": "I8",
    "I16": "I16",
    "I32": "I32",
    "I64": "I64",
}

# Block-quantized GGML types that gguf-py decodes in numpy (gguf 0.19): every one llama.cpp's quantize offers
# but Q8_1/Q8_K (intermediate types, never in files) and Q1_0 (no numpy decoder yet); those an older gguf-py
# does not know are left out.
SUPPORTED: frozenset[str] = frozenset(GGMLQuantizationType.__members__) & frozenset(
    {
        "Q4_0",
        "Q4_1",
        "Q5_0",
        "Q5_1",
        "Q8_0",
        "Q2_K",
        "Q3_K",
        "Q4_K",
        "Q5_K",
        "Q6_K",
        "IQ1_S",
        "IQ1_M",
        "IQ2_XXS",
        "IQ2_XS",
        "IQ2_S",
        "IQ3_XXS",
        "IQ3_S",
        "IQ4_NL",
        "IQ4_XS",
        "TQ1_0",
        "TQ2_0",
        "MXFP4",
        "NVFP4",
    }
)


def block(quant: str) -> tuple[int, int]:
    """(elements, bytes) of one block of a GGML type (1 element for the plain types). ValueError when unknown."""
    try:
        return GGML_QUANT_SIZES[GGMLQuantizationType[quant]]
    except KeyError:
        raise ValueError(f"unknown GGML type {quant!r}") from None


def row_bytes(quant: str, ncols: int) -> int:
    """Bytes of one stored row of `ncols` elements of the GGML type `quant`. ValueError when `ncols` is not a
    whole number of blocks (GGUF files never hold such a row; a reader checks before it asks)."""
    elements, size = block(quant)
    if ncols < 0 or ncols % elements:
        raise ValueError(f"a {quant} row of {ncols} elements is not a whole number of {elements}-element blocks")
    return ncols // elements * size


def dequantize_rows(raw: np.ndarray, quant: str, ncols: int) -> np.ndarray:
    """Whole rows of a quantized tensor, decoded: `raw` uint8 [n, row_bytes(quant, ncols)] -> float32 [n, ncols].

    `raw` may be read-only (a view of the bytes read); the result is a new C-contiguous array."""
    if quant not in SUPPORTED:
        raise ValueError(f"wsel cannot dequantize {quant!r}; it decodes {', '.join(sorted(SUPPORTED))}")
    width = row_bytes(quant, ncols)
    if raw.dtype != np.uint8 or raw.ndim != 2 or raw.shape[1] != width:
        raise ValueError(f"expected uint8 rows of {width} bytes ({ncols} {quant} elements), got {raw.dtype}{raw.shape}")
    if raw.shape[0] == 0:
        return np.empty((0, ncols), dtype=np.float32)
    values = dequantize(np.ascontiguousarray(raw), GGMLQuantizationType[quant])  # [n, ncols] float32
    return np.ascontiguousarray(values, dtype=np.float32).reshape(raw.shape[0], ncols)
