"""Golden outputs: every family, name set and planning path, run end to end, digested.

Each case builds a teacher whose values follow an exact integer pattern (no random generator, so the
bytes are the same with any torch or numpy), runs `wsel init` (and, for the report, with `--json`), and
digests what was written: for a safetensors file its tensor bytes and its header (the `wsel.version`
strings removed, so a version bump changes nothing), for a JSON file its content, for other files their
bytes, and the JSON report with temporary paths and timings removed.

`tests/test_golden.py` compares these digests with `tests/golden/outputs.json`. Regenerate that file
(`python tests/golden.py --write`) only when a change of output is intended, and say why in the commit.
"""

from __future__ import annotations

import hashlib
import json
import struct
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))  # run as a script: conftest and the e2e modules beside it

from conftest import run_cli, save, save_sharded, write_manifest  # noqa: E402

GOLDEN_FILE = Path(__file__).parent / "golden" / "outputs.json"


def pattern(name: str, shape: tuple[int, ...], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Values in [-1, 1) from integer arithmetic only: distinct along every dim, the same on every machine."""
    n = 1
    for d in shape:
        n *= d
    seed = zlib.crc32(name.encode())
    ints = (torch.arange(n, dtype=torch.int64) * 2654435761 + seed) % (1 << 20)  # [numel]
    values = (ints.to(torch.float64) - (1 << 19)) / (1 << 19)  # exact in float32: 20 significant bits
    return values.to(torch.float32).reshape(shape).to(dtype)


def patterned(shapes: dict[str, tuple[int, ...]], dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    return {name: pattern(name, tuple(shape), dtype) for name, shape in shapes.items()}


# ------------------------------------------------------------------------------------------- teachers


def hf_teacher(family_name: str, dtype: torch.dtype = torch.float32, shards: int = 1) -> Callable[[Path], Path]:
    """A folder with transformers' config.json and tensor names for the family, the values patterned."""

    def build(folder: Path) -> Path:
        from safetensors import safe_open
        from test_e2e_families import FAMILIES, write_dummy_tokenizer

        family = FAMILIES[family_name]
        saved = folder.parent / f"{folder.name}-saved"
        torch.manual_seed(0)
        family.model_class(family.config_class(**family.teacher)).save_pretrained(saved)
        with safe_open(saved / "model.safetensors", "pt") as f:
            shapes = {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}  # noqa: SIM118
        config = json.loads((saved / "config.json").read_text())
        config.pop("transformers_version", None)
        folder.mkdir(parents=True)
        if shards > 1:
            save_sharded(folder, patterned(shapes, dtype), shards)
        else:
            save(folder / "model.safetensors", patterned(shapes, dtype))
        (folder / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
        if family.tokenizer:
            write_dummy_tokenizer(folder)
        return folder

    return build


def timm_teacher(kind: str) -> Callable[[Path], Path]:
    def build(folder: Path) -> Path:
        from test_e2e_timm import CONVNEXT_T, VIT_S, convnext_shapes, vit_shapes

        shapes = vit_shapes(**VIT_S) if kind == "vit" else convnext_shapes(**CONVNEXT_T)
        return save(folder / f"{kind}.safetensors", patterned(shapes))

    return build


def timm_student(kind: str, student: str) -> Callable[[Path], Path]:
    def build(folder: Path) -> Path:
        import test_e2e_timm as t

        sizes = getattr(t, student)
        shapes = t.vit_shapes(**sizes) if kind == "vit" else t.convnext_shapes(**sizes)
        return write_manifest(folder / f"{student.lower()}.json", shapes)

    return build


TINY_SHAPES = {"embed.weight": (50, 16), "head.weight": (10, 16), "norm.weight": (16,)}
for _i in range(4):
    TINY_SHAPES |= {f"layers.{_i}.attn.weight": (48, 16), f"layers.{_i}.mlp.weight": (64, 16)}


def tiny_teacher(folder: Path) -> Path:
    return save(folder / "teacher.safetensors", patterned(TINY_SHAPES))


def tiny_manifest(folder: Path) -> Path:
    shapes = {"embed.weight": (50, 8), "head.weight": (10, 8), "norm.weight": (8,)}
    for i in range(2):
        shapes |= {f"layers.{i}.attn.weight": (24, 8), f"layers.{i}.mlp.weight": (20, 8)}
    return write_manifest(folder / "student.json", shapes)


def tiny_template(folder: Path) -> Path:
    """A template .safetensors student (only its header is read); BF16 asks for a cast in the report."""
    shapes = {"embed.weight": (50, 12), "norm.weight": (12,), "layers.0.mlp.weight": (30, 12)}
    return save(folder / "template.safetensors", patterned(shapes, torch.bfloat16))


def tinyformer_teacher(folder: Path) -> Path:
    """A family wsel has no data for: the config-driven generic path."""
    folder.mkdir(parents=True)
    config = {"model_type": "tinyformer", "hidden_size": 24, "ffn_size": 40, "num_hidden_layers": 4, "vocab_size": 11}
    (folder / "config.json").write_text(json.dumps(config))
    shapes = {"tok.weight": (11, 24), "final_norm.weight": (24,)}
    for i in range(4):
        shapes |= {f"blocks.{i}.ffn_in.weight": (40, 24), f"blocks.{i}.ffn_out.weight": (24, 40)}
    save(folder / "model.safetensors", patterned(shapes))
    return folder


# ---------------------------------------------------------------------------------------------- cases


@dataclass(frozen=True)
class Case:
    teacher: Callable[[Path], Path]
    args: tuple[str, ...] = ()  # student and options
    student: Callable[[Path], Path] | None = None  # a student file, passed as --student-config
    output: str = "out"  # a folder, or a name ending in .safetensors


def _family_cases() -> dict[str, Case]:
    from test_e2e_families import FAMILIES

    cases = {}
    for name, family in FAMILIES.items():
        sets = tuple(a for k, v in family.student.items() for a in ("--set", f"{k}={json.dumps(v)}"))
        cases[f"family-{name}"] = Case(hf_teacher(name), sets)
    return cases


LLAMA_SETS = ("--set", "num_hidden_layers=2", "--set", "hidden_size=32", "--set", "intermediate_size=48",
              "--set", "num_attention_heads=4", "--set", "num_key_value_heads=2")  # fmt: skip
LLAMA_ODD = ("--set", "num_hidden_layers=3", "--set", "hidden_size=40", "--set", "intermediate_size=70",
             "--set", "num_attention_heads=6", "--set", "num_key_value_heads=3", "--set", "head_dim=8")  # fmt: skip


def cases() -> dict[str, Case]:
    llama, vit, convnext = hf_teacher("llama"), timm_teacher("vit"), timm_teacher("convnext")
    vit_ti, vit_odd = timm_student("vit", "VIT_TI"), timm_student("vit", "VIT_ODD")
    convnext_f, convnext_odd = timm_student("convnext", "CONVNEXT_F"), timm_student("convnext", "CONVNEXT_ODD")
    one_file = "s.safetensors"
    tinyformer_small = ("--set", "hidden_size=12", "--set", "ffn_size=20", "--set", "num_hidden_layers=2")
    return {
        **_family_cases(),
        # strategies and options on the architecture path
        "llama-first": Case(llama, (*LLAMA_SETS, "--elements", "first")),
        "llama-random": Case(llama, (*LLAMA_SETS, "--elements", "random", "--seed", "3")),
        "llama-magnitude": Case(llama, (*LLAMA_SETS, "--elements", "magnitude")),
        "llama-flat": Case(llama, (*LLAMA_SETS, "--attention", "flat")),
        "llama-rescale": Case(llama, (*LLAMA_SETS, "--rescale")),
        "llama-bf16": Case(llama, (*LLAMA_SETS, "--dtype", "bf16")),
        "llama-layers-uniform": Case(llama, (*LLAMA_SETS, "--layers", "uniform")),
        "llama-layers-last": Case(llama, (*LLAMA_SETS, "--layers", "last")),
        "llama-layers-list": Case(llama, (*LLAMA_SETS, "--layers", "0,3")),
        "llama-exclude": Case(llama, (*LLAMA_SETS, "--exclude", "lm_head*", "--exclude", "*.mlp.up_proj.weight")),
        "llama-odd-sizes": Case(llama, LLAMA_ODD),
        "llama-odd-magnitude": Case(llama, (*LLAMA_ODD, "--elements", "magnitude")),
        "llama-shards-out": Case(llama, (*LLAMA_SETS, "--max-shard-size", "20kB")),
        "llama-sharded-bf16-teacher": Case(
            hf_teacher("llama", torch.bfloat16, shards=3), (*LLAMA_SETS, "--dtype", "fp32")
        ),
        "gemma2-magnitude": Case(hf_teacher("gemma2"), (*LLAMA_SETS, "--elements", "magnitude", "--rescale")),
        "phi3-random": Case(hf_teacher("phi3"), (*LLAMA_SETS, "--elements", "random")),
        "gpt2-first-flat": Case(
            hf_teacher("gpt2"),
            (
                "--set",
                "n_layer=3",
                "--set",
                "n_embd=40",
                "--set",
                "n_head=5",
                "--elements",
                "first",
                "--attention",
                "flat",
            ),
        ),
        # name sets (timm layouts, manifest students)
        "timm-vit": Case(vit, ("--exclude", "head*"), vit_ti, one_file),
        "timm-vit-first": Case(vit, ("--elements", "first"), vit_ti, one_file),
        "timm-vit-odd": Case(vit, ("--exclude", "head*"), vit_odd, one_file),
        "timm-vit-flat": Case(vit, ("--attention", "flat"), vit_odd, one_file),
        "timm-vit-magnitude": Case(vit, ("--elements", "magnitude"), vit_ti, "s/"),
        "timm-convnext": Case(convnext, ("--exclude", "head.fc*"), convnext_f, one_file),
        "timm-convnext-odd": Case(convnext, ("--layers", "uniform"), convnext_odd, one_file),
        "timm-convnext-random": Case(convnext, ("--elements", "random", "--rescale"), convnext_f, one_file),
        # the generic path
        "generic-manifest": Case(tiny_teacher, (), tiny_manifest, one_file),
        "generic-manifest-magnitude": Case(
            tiny_teacher, ("--elements", "magnitude", "--layers", "last"), tiny_manifest, one_file
        ),
        "generic-template": Case(tiny_teacher, ("--dtype", "bf16", "--rescale"), tiny_template, "s/"),
        "generic-config": Case(tinyformer_teacher, tinyformer_small),
        "generic-config-first": Case(
            tinyformer_teacher, ("--set", "hidden_size=10", "--set", "ffn_size=30", "--elements", "first")
        ),
    }


# --------------------------------------------------------------------------------------------- digests


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _strip_versions(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_versions(v) for k, v in value.items() if k not in ("wsel.version", "wsel_version")}
    if isinstance(value, list):
        return [_strip_versions(v) for v in value]
    return value


def digest_file(path: Path) -> str:
    data = path.read_bytes()
    if path.suffix == ".safetensors":
        (n,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8 : 8 + n])
        metadata = header.get("__metadata__", {})
        if "wsel.provenance" in metadata:
            metadata["wsel.provenance"] = _strip_versions(json.loads(metadata["wsel.provenance"]))
        header = _strip_versions(header)
        return _sha(json.dumps(header).encode()) + ":" + _sha(data[8 + n :])  # key order kept: it is part of the file
    if path.suffix == ".json":
        return _sha(json.dumps(_strip_versions(json.loads(data))).encode())
    return _sha(data)


def digest_report(text: str, tmp: Path) -> str:
    doc = _strip_versions(json.loads(text.replace(str(tmp), "<tmp>")))
    doc.pop("run", None)  # timings and absolute paths
    return _sha(json.dumps(doc).encode())


def run_case(case: Case, tmp: Path) -> dict[str, str]:
    """Build the teacher, run `wsel init --json`, digest every file written and the report."""
    teacher = case.teacher(tmp / "teacher")
    args: list[str | Path] = ["init", "-t", teacher, "--json", "-q", *case.args]
    if case.student is not None:
        args += ["--student-config", case.student(tmp)]
    out = tmp / case.output
    result = run_cli(*args, "-o", f"{out}/" if case.output.endswith("/") else out)
    if result.exit_code != 0:
        raise AssertionError(f"wsel init failed: {result.stderr}")
    files = [out] if out.is_file() else sorted(p for p in out.iterdir())
    digests = {p.name: digest_file(p) for p in files}
    digests["<report>"] = digest_report(result.stdout, tmp)
    return digests


def main() -> None:
    import tempfile

    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python tests/golden.py --write   (regenerates tests/golden/outputs.json)")
    results = {}
    for name, case in cases().items():
        with tempfile.TemporaryDirectory() as tmp:
            results[name] = run_case(case, Path(tmp))
        print(name, file=sys.stderr)
    GOLDEN_FILE.parent.mkdir(exist_ok=True)
    GOLDEN_FILE.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
