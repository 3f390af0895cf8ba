"""What a file is, from its first bytes, before its name is believed: a refusal names the format and the way
forward (a conversion command that works, tested) instead of misreading a GGUF header length or calling
every `.bin` a pickle."""

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
# Dequantizes a GGUF file with transformers' GGUF loader and writes a Hugging Face folder (model.safetensors
# with every tensor under its own name, tied ones too, and config.json without the GGUF quantization) that
# wsel reads. (transformers refuses save_pretrained for a model loaded from GGUF.)
GGUF_FIX = (
    'python -c "import sys, os, json; from transformers import AutoModelForCausalLM; '
    "from safetensors.torch import save_file; f = os.path.abspath(sys.argv[1]); "
    "m = AutoModelForCausalLM.from_pretrained(os.path.dirname(f), gguf_file=os.path.basename(f)); "
    "os.makedirs(sys.argv[2], exist_ok=True); "
    "save_file({k: v.contiguous().clone() for k, v in m.state_dict().items()}, "
    "os.path.join(sys.argv[2], 'model.safetensors'), metadata={'format': 'pt'}); "
    "c = m.config.to_dict(); c.pop('quantization_config', None); "
    "json.dump(c, open(os.path.join(sys.argv[2], 'config.json'), 'w'), indent=2)\""
)


def sniff(head: bytes) -> Kind | None:
    """The format the first bytes say, or None when they may well be safetensors."""
    if head[:4] == b"GGUF":
        return "gguf"
    if head[:4] == b"PK\x03\x04" or (len(head) > 1 and head[0] == 0x80 and 2 <= head[1] <= 5):
        return "torch"  # torch.save's zip archive, or a raw pickle (protocol 2 to 5)
    return None


def refusal(where: str, kind: Kind) -> str:
    """The message (after `where: `) refusing a file of this kind, with the way forward."""
    path = PurePath(where)
    if kind == "gguf":
        out = path.with_name(path.stem + "-hf")
        return (
            "a GGUF file (llama.cpp, Ollama), not safetensors; convert it once to a Hugging Face folder "
            f"(pip install gguf accelerate): {GGUF_FIX} {shlex.quote(where)} {shlex.quote(str(out))}"
        )
    if kind == "torch":
        hf_name = path.name.startswith("pytorch_model")  # a Hugging Face folder's: the name it would have
        target = path.with_name("model.safetensors") if hf_name else path.with_suffix(".safetensors")
        if target == path:  # a pickle under a .safetensors name: never convert a file onto itself
            target = path.with_name(path.stem + ".converted.safetensors")
        return (
            "a PyTorch pickle checkpoint: not loaded, since unpickling can run code; convert it once, in an "
            f"environment you trust: {PICKLE_FIX} {shlex.quote(where)} {shlex.quote(str(target))}"
        )
    return (
        "neither safetensors nor a PyTorch checkpoint (a CTranslate2 or other runtime's model.bin?); "
        "give wsel the original model's safetensors checkpoint"
    )
