"""What a new user meets: messages that lead to the fix (and the fix, followed, works), an `inspect` that reads
like a model, and a config.json that says the dtype the weights were cast to."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import PICKLE_FIX, random_state, run_cli, save, write_manifest
from golden import hf_teacher
from safetensors.torch import load_file

import wsel

LLAMA_STUDENT = ("--set", "num_hidden_layers=2")


@pytest.fixture(scope="module")
def llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Llama folder whose config.json states no head_dim (as SmolLM2's): head_dim is hidden / heads = 8."""
    folder = hf_teacher("llama")(tmp_path_factory.mktemp("llama") / "teacher")
    config = json.loads((folder / "config.json").read_text())
    config.pop("head_dim", None)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def refused(result: Any) -> str:
    assert result.exit_code == 1, result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("wsel: error: ")
    return str(result.stderr[len("wsel: error: ") : -1])


# ---------------------------------------------------------------------------------------- messages


def test_a_derived_head_dim_too_large_says_so_and_both_fixes_work(llama: Path, tmp_path: Path) -> None:
    sets = ("--set", "hidden_size=32", "--set", "num_attention_heads=2")
    message = refused(run_cli("init", "-t", llama, "-o", f"{tmp_path / 'a'}/", *sets))
    assert message == (
        f"{llama / 'config.json'} with --set hidden_size=32 num_attention_heads=2: student head_dim (head_dim) is "
        "16, derived as hidden_size / num_attention_heads = 32 / 2, but the teacher's is 8; a student cannot be "
        "larger: pass --set head_dim=8 (the teacher's), or --set num_attention_heads=4 (hidden_size / heads = 8)"
    )
    for fix in (("--set", "head_dim=8"), ("--set", "num_attention_heads=4")):
        out = tmp_path / fix[1].replace("=", "-")
        result = run_cli("init", "-t", llama, "-o", f"{out}/", "-q", "--set", "hidden_size=32", *fix)
        assert result.exit_code == 0, result.stderr
        assert json.loads((out / "config.json").read_text())["hidden_size"] == 32


def test_an_attention_wider_than_the_residual_stream_is_noted(llama: Path) -> None:
    result = run_cli("inspect", "-t", llama, "--json", "--set", "hidden_size=32", "--set", "head_dim=8")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["warnings"] == [
        "student attention is 8 heads × 8 = 64 wide, wider than its hidden_size 32 (the teacher's is 64, "
        "within its 64): legal, but check it is meant (head_dim 8)"
    ]


def test_real_pytorch_checkpoints_read_as_their_converted_copies(tmp_path: Path) -> None:
    """A timm-style training checkpoint (the state dict under "model", a non-contiguous tensor) and a
    transformers pytorch_model.bin (tied embeddings sharing one storage) are read directly, and give the same
    student as the safetensors copy the conversion command (offered for legacy files) makes of them."""
    import transformers as tf

    timm = tmp_path / "vit.pth"
    weight = torch.randn(8, 12).t()  # non-contiguous, as transposed or sliced weights are
    torch.save({"model": {"fc.weight": weight, "bn.weight": torch.ones(12)}, "epoch": 3}, timm)
    bert = tmp_path / "bert"
    config = tf.BertConfig(
        vocab_size=32, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32
    )
    model = tf.BertForMaskedLM(config)
    config.save_pretrained(bert)
    torch.save(model.state_dict(), bert / "pytorch_model.bin")  # as transformers 4 saved it: tied tensors shared
    state = torch.load(bert / "pytorch_model.bin", weights_only=True)
    shared = ("cls.predictions.decoder.weight", "bert.embeddings.word_embeddings.weight")
    assert state[shared[0]].data_ptr() == state[shared[1]].data_ptr()

    cases = (
        (timm, tmp_path / "vit.safetensors", ["-s", write_manifest(tmp_path / "s.json", {"fc.weight": (6, 8)})]),
        (bert / "pytorch_model.bin", bert / "model.safetensors", list(LLAMA_STUDENT)),
    )
    for teacher, converted, args in cases:
        direct = run_cli("init", "-t", teacher, "-o", f"{tmp_path / 'direct'}/", "--force", "-q", *args)
        assert direct.exit_code == 0, direct.stderr
        done = subprocess.run(
            [sys.executable, *shlex.split(PICKLE_FIX)[1:], str(teacher), str(converted)], capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        via = run_cli("init", "-t", converted, "-o", f"{tmp_path / 'via'}/", "--force", "-q", *args)
        assert via.exit_code == 0, via.stderr
        read, copied = (load_file(tmp_path / out / "model.safetensors") for out in ("direct", "via"))
        assert read.keys() == copied.keys() and all(torch.equal(read[k], copied[k]) for k in read)
    assert torch.equal(load_file(timm.with_suffix(".safetensors"))["fc.weight"], weight)


def test_a_bin_that_is_not_pytorch_is_not_called_a_pickle(tmp_path: Path) -> None:
    folder = tmp_path / "ct2"
    folder.mkdir()
    (folder / "model.bin").write_bytes(b"\x06\x00\x00\x00" + bytes(60))  # a CTranslate2 model.bin starts so
    (folder / "config.json").write_text("{}")
    message = refused(run_cli("inspect", "-t", folder))
    assert message == (
        f"{folder / 'model.bin'}: neither safetensors, a PyTorch checkpoint nor GGUF (a CTranslate2 or other "
        "runtime's model.bin?); give wsel the original model's checkpoint"
    )


# ---------------------------------------------------------------------------------------- inspect


def test_inspect_folds_layers_in_numeric_order_and_names_the_family(tmp_path: Path) -> None:
    shapes = {f"model.layers.{i}.mlp.weight": (4, 4) for i in range(12)} | {"model.norm.weight": (4,)}
    folder = tmp_path / "t"
    save(folder / "model.safetensors", random_state(shapes))
    (folder / "config.json").write_text(json.dumps({"model_type": "tinyformer"}))
    doc = wsel.teacher_report(folder)
    assert [t["name"] for t in doc["tensors"]][:4] == [f"model.layers.{i}.mlp.weight" for i in (0, 1, 2, 3)]
    assert doc["family"] == {"model_type": "tinyformer", "architecture": None, "name_set": None}
    from wsel.render import family_line, markdown_teacher, teacher_rows

    assert teacher_rows(doc["tensors"]) == [
        ["model.layers.{0-11}.mlp.weight", "[4, 4]", "F32", "12 × 64 B", "model.safetensors"],
        ["model.norm.weight", "[4]", "F32", "16 B", "model.safetensors"],
    ]
    assert [row[0] for row in teacher_rows(doc["tensors"], unfold=True)][9:12] == [
        "model.layers.9.mlp.weight", "model.layers.10.mlp.weight", "model.layers.11.mlp.weight",
    ]  # fmt: skip
    assert family_line(doc["family"]) == (
        "model_type tinyformer: no architecture data; a config.json student takes the generic path "
        "(dims mapped by config values)"
    )
    result = run_cli("inspect", "-t", folder, "--report", tmp_path / "r.md", "-q")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "r.md").read_text() == markdown_teacher(doc)
    result = run_cli("inspect", "-t", folder, "--all")
    assert "model.layers.10.mlp.weight" in result.stderr.replace("\n", "")


def test_layer_groups_of_common_namings_are_found(tmp_path: Path) -> None:
    """The rule: an index right after layers, layer, h, blocks, block, _blocks or resblocks (under stages.S.)."""
    from wsel.layers import find_layer

    found = {name: (ref.group, ref.index) if (ref := find_layer(name)) else None for name in (
        "_blocks.3._depthwise_conv.weight", "encoder.block.2.layer.0.weight", "visual.transformer.resblocks.5.attn.w",
        "stages.1.blocks.2.conv.weight", "model.layers.１.w", "blocks_extra.1.w",
    )}  # fmt: skip
    assert found == {
        "_blocks.3._depthwise_conv.weight": ("_blocks", 3),
        "encoder.block.2.layer.0.weight": ("encoder.block", 2),
        "visual.transformer.resblocks.5.attn.w": ("visual.transformer.resblocks", 5),
        "stages.1.blocks.2.conv.weight": ("stages.1.blocks", 2),
        "model.layers.１.w": None,  # a fullwidth digit is no layer index
        "blocks_extra.1.w": None,
    }


# ---------------------------------------------------------------------------------------- output


@pytest.mark.parametrize(("dtype", "written"), [("bf16", "bfloat16"), ("fp16", "float16"), (None, None)])
def test_config_json_says_the_dtype_written(
    llama: Path, tmp_path: Path, dtype: str | None, written: str | None
) -> None:
    teacher_config = json.loads((llama / "config.json").read_text())
    out = tmp_path / "out"
    result = run_cli("init", "-t", llama, "-o", f"{out}/", "-q", *LLAMA_STUDENT, *(("--dtype", dtype) if dtype else ()))
    assert result.exit_code == 0, result.stderr
    config = json.loads((out / "config.json").read_text())
    expected = written or teacher_config.get("dtype")
    assert config.get("dtype") == expected
    import transformers as tf

    model = tf.LlamaForCausalLM.from_pretrained(out)
    assert str(model.dtype) == f"torch.{expected or 'float32'}"


def test_a_rope_refusal_offers_a_fix_the_family_can_take(tmp_path: Path) -> None:
    """GPT-NeoX's head size is always hidden / heads (no head_dim key): the fix is a head count, checked to work."""
    import transformers as tf

    folder = tmp_path / "neox"
    config = tf.GPTNeoXConfig(vocab_size=64, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                              num_attention_heads=4, max_position_embeddings=32)  # fmt: skip
    tf.GPTNeoXForCausalLM(config).save_pretrained(folder)
    message = refused(run_cli("inspect", "-t", folder, "--set", "hidden_size=48"))
    assert message == (
        f"{folder / 'config.json'} with --set hidden_size=48: head_dim 16 → 12 cannot keep RoPE pairs and "
        "frequencies (rotary dims 4 → 3); head_dim sizes that work: 8, 10, 16; e.g. --set num_attention_heads=3 "
        "(hidden_size / num_attention_heads = 16)"
    )
    fixed = run_cli("inspect", "-t", folder, "-q", "--set", "hidden_size=48", "--set", "num_attention_heads=3")
    assert fixed.exit_code == 0, fixed.stderr


def test_a_derived_size_too_large_is_never_offered_as_a_key_to_set(tmp_path: Path) -> None:
    """A tower's head size is hidden / heads (CLIP's vision tower): the fix names what to make smaller, never
    `--set vision_config.hidden_size / vision_config.num_attention_heads=8`."""
    import transformers as tf

    folder = tmp_path / "clip"
    text = dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                max_position_embeddings=16)  # fmt: skip
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=16,
                  patch_size=8)  # fmt: skip
    tf.CLIPModel(tf.CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)).save_pretrained(folder)
    message = refused(run_cli("inspect", "-t", folder, "--set", "vision_config.num_attention_heads=1"))
    assert message.endswith(
        "but the teacher's is 8; a student cannot be larger: choose sizes that make "
        "vision_config.hidden_size / vision_config.num_attention_heads at most 8"
    )
