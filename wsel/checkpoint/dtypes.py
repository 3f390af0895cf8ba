"""Facts about safetensors dtypes, as one table."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DtypeInfo:
    bits: int  # bits per element; sub-byte dtypes (F4, F6) pack several elements per byte
    kind: str  # "float" | "int" | "bool" | "complex"
    torch_name: str  # attribute of the torch module, for casting on request only


DTYPES: dict[str, DtypeInfo] = {
    "BOOL": DtypeInfo(8, "bool", "bool"),
    "U8": DtypeInfo(8, "int", "uint8"),
    "I8": DtypeInfo(8, "int", "int8"),
    "U16": DtypeInfo(16, "int", "uint16"),
    "I16": DtypeInfo(16, "int", "int16"),
    "U32": DtypeInfo(32, "int", "uint32"),
    "I32": DtypeInfo(32, "int", "int32"),
    "U64": DtypeInfo(64, "int", "uint64"),
    "I64": DtypeInfo(64, "int", "int64"),
    "F4": DtypeInfo(4, "float", "float4_e2m1fn_x2"),
    "F6_E2M3": DtypeInfo(6, "float", ""),
    "F6_E3M2": DtypeInfo(6, "float", ""),
    "F8_E5M2": DtypeInfo(8, "float", "float8_e5m2"),
    "F8_E4M3": DtypeInfo(8, "float", "float8_e4m3fn"),
    "F8_E5M2FNUZ": DtypeInfo(8, "float", "float8_e5m2fnuz"),
    "F8_E4M3FNUZ": DtypeInfo(8, "float", "float8_e4m3fnuz"),
    "F8_E8M0": DtypeInfo(8, "float", "float8_e8m0fnu"),
    "F16": DtypeInfo(16, "float", "float16"),
    "BF16": DtypeInfo(16, "float", "bfloat16"),
    "F32": DtypeInfo(32, "float", "float32"),
    "F64": DtypeInfo(64, "float", "float64"),
    "C64": DtypeInfo(64, "complex", "complex64"),
}

# --dtype choices and the safetensors dtype each one writes.
CAST_TARGETS: dict[str, str] = {"fp32": "F32", "fp16": "F16", "bf16": "BF16"}


def byte_length(dtype: str, numel: int) -> int:
    """Bytes that `numel` elements of `dtype` occupy (sub-byte dtypes round up, as safetensors does)."""
    return (numel * DTYPES[dtype].bits + 7) // 8


def element_size(dtype: str) -> int | None:
    """Bytes per element, or None for packed sub-byte dtypes that cannot be sliced per element."""
    bits = DTYPES[dtype].bits
    return bits // 8 if bits % 8 == 0 else None
