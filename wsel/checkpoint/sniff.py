"""What a file is, from its first bytes, before its name is believed: GGUF and PyTorch files are read as such
(`formats`), never misread as a safetensors header length; a `.bin` of another runtime is named so; a PyTorch
file wsel cannot read by ranges gets a conversion command that works (tested)."""

from __future__ import annotations

import shlex
from pathlib import PurePath
from typing import Literal

Kind = Literal["gguf", "torch", "other"]

# Converts a PyTorch checkpoint (a state dict, plain or under "state_dict"/"model", as timm and training
# scripts save it) without running its code beyond torch's restricted loader: non-contiguous tensors are
# made contiguous and tensors sharing storage (tied weights) are copied, as save_file requires.
PICKLE_FIX = (
    'python -c "import sys, torch; from safetensors.torch import save_file; '
    "sd = torch.load(sys.argv[1], map_location='cpu', weights_only=True); "
    "sd = sd.get('state_dict', sd.get('model', sd)); "
    "save_file({k: v.contiguous().clone() for k, v in sd.items() if isinstance(v, torch.Tensor)}, sys.argv[2], "
    "metadata={'format': 'pt'})\""
)


def sniff(head: bytes) -> Kind | None:
    """The format the first bytes say, or None when they may well be safetensors."""
    if head[:4] == b"GGUF":
        return "gguf"
    if head[:4] == b"PK\x03\x04" or (len(head) > 1 and head[0] == 0x80 and 2 <= head[1] <= 5):
        return "torch"  # torch.save's zip archive, or a raw pickle (protocol 2 to 5)
    return None


def refusal(where: str, kind: Kind) -> str:
    """The message (after `where: `) for a file of this kind that is read as another, or not at all."""
    if kind == "gguf":
        return "a GGUF file (llama.cpp, Ollama)"
    if kind == "torch":
        return "a PyTorch checkpoint"
    return (
        "neither safetensors, a PyTorch checkpoint nor GGUF (a CTranslate2 or other runtime's model.bin?); "
        "give wsel the original model's checkpoint"
    )


def conversion(where: str) -> str:
    """The way forward for a PyTorch file wsel cannot read by byte ranges (legacy, compressed, big-endian): a
    command, run as printed in tests, that writes a safetensors file beside it."""
    path = PurePath(where)
    hf_name = path.name.startswith("pytorch_model")  # a Hugging Face folder's: the name it would have
    target = path.with_name("model.safetensors") if hf_name else path.with_suffix(".safetensors")
    if target == path:  # a pickle under a .safetensors name: never convert a file onto itself
        target = path.with_name(path.stem + ".converted.safetensors")
    return f"convert it once, in an environment you trust: {PICKLE_FIX} {shlex.quote(where)} {shlex.quote(str(target))}"
