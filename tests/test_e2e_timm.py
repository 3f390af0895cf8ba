"""End to end on timm-named checkpoints: ViT-S/16 → ViT-Ti/16, ConvNeXt-T → ConvNeXt-F (also with `conv_mlp`:
1x1 convolutions for Linear weights), ResNet-50 → ResNet-18's widths and ResNet-34 → ResNet-18.

timm itself is not a dependency: the shape tables below are written by hand from timm's
`VisionTransformer` and `ConvNeXt` (same tensor names and shapes as their `state_dict()`), so the
test builds real-looking teachers and students and checks every written tensor bit for bit
against the paper's own `uniform_element_selection`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import random_state, run_cli, save, write_manifest
from reference import uniform_element_selection
from safetensors import safe_open
from safetensors.torch import load_file

CLASSES = 100  # a 100-class head keeps the files small; it is excluded anyway, as in the paper


# ------------------------------------------------------------------------------------ shape tables


def vit_shapes(embed: int, depth: int, mlp: int, classes: int = CLASSES, img: int = 224, patch: int = 16) -> dict:
    """timm `vit_*_patch16_224` state_dict shapes (class token, learned pos_embed, fused qkv)."""
    tokens = (img // patch) ** 2 + 1  # 196 patches + the class token
    shapes: dict[str, tuple[int, ...]] = {
        "cls_token": (1, 1, embed),
        "pos_embed": (1, tokens, embed),
        "patch_embed.proj.weight": (embed, 3, patch, patch),
        "patch_embed.proj.bias": (embed,),
    }
    for i in range(depth):
        p = f"blocks.{i}."
        shapes |= {
            p + "norm1.weight": (embed,),
            p + "norm1.bias": (embed,),
            p + "attn.qkv.weight": (3 * embed, embed),  # [q|k|v = 3*heads*head_dim, embed]
            p + "attn.qkv.bias": (3 * embed,),
            p + "attn.proj.weight": (embed, embed),
            p + "attn.proj.bias": (embed,),
            p + "norm2.weight": (embed,),
            p + "norm2.bias": (embed,),
            p + "mlp.fc1.weight": (mlp, embed),
            p + "mlp.fc1.bias": (mlp,),
            p + "mlp.fc2.weight": (embed, mlp),
            p + "mlp.fc2.bias": (embed,),
        }
    shapes |= {
        "norm.weight": (embed,),
        "norm.bias": (embed,),
        "head.weight": (classes, embed),
        "head.bias": (classes,),
    }
    return shapes


def convnext_shapes(depths: tuple[int, ...], dims: tuple[int, ...], classes: int = CLASSES) -> dict:
    """timm `convnext_*` state_dict shapes (Linear MLP, layer-scale `gamma`, NormMlpClassifierHead)."""
    shapes: dict[str, tuple[int, ...]] = {
        "stem.0.weight": (dims[0], 3, 4, 4),  # patchify conv, stride 4
        "stem.0.bias": (dims[0],),
        "stem.1.weight": (dims[0],),  # LayerNorm2d
        "stem.1.bias": (dims[0],),
    }
    for s, (depth, dim) in enumerate(zip(depths, dims, strict=True)):
        if s > 0:  # stage 0 has no downsample (the stem already did it)
            shapes |= {
                f"stages.{s}.downsample.0.weight": (dims[s - 1],),  # LayerNorm2d on the input channels
                f"stages.{s}.downsample.0.bias": (dims[s - 1],),
                f"stages.{s}.downsample.1.weight": (dim, dims[s - 1], 2, 2),
                f"stages.{s}.downsample.1.bias": (dim,),
            }
        for b in range(depth):
            p = f"stages.{s}.blocks.{b}."
            shapes |= {
                p + "gamma": (dim,),
                p + "conv_dw.weight": (dim, 1, 7, 7),  # depthwise 7x7
                p + "conv_dw.bias": (dim,),
                p + "norm.weight": (dim,),
                p + "norm.bias": (dim,),
                p + "mlp.fc1.weight": (4 * dim, dim),
                p + "mlp.fc1.bias": (4 * dim,),
                p + "mlp.fc2.weight": (dim, 4 * dim),
                p + "mlp.fc2.bias": (dim,),
            }
    shapes |= {
        "head.norm.weight": (dims[-1],),
        "head.norm.bias": (dims[-1],),
        "head.fc.weight": (classes, dims[-1]),
        "head.fc.bias": (classes,),
    }
    return shapes


def resnet_shapes(
    depths: tuple[int, ...], widths: tuple[int, ...], stem: int = 64, expansion: int = 4, classes: int = CLASSES
) -> dict:
    """timm `resnet*` state_dict shapes: Bottleneck blocks (1x1, 3x3, 1x1 convs; resnet50) when `expansion` is
    not 1, else BasicBlocks (two 3x3 convs; resnet18/34). Every batch norm has weight, bias, running_mean,
    running_var (float) and num_batches_tracked (an I64 scalar)."""

    def bn(prefix: str, channels: int) -> dict[str, tuple[int, ...]]:
        return {f"{prefix}.{p}": (channels,) for p in ("weight", "bias", "running_mean", "running_var")} | {
            f"{prefix}.num_batches_tracked": ()
        }

    shapes: dict[str, tuple[int, ...]] = {"conv1.weight": (stem, 3, 7, 7), **bn("bn1", stem)}
    inplanes = stem
    for s, (depth, width) in enumerate(zip(depths, widths, strict=True), start=1):
        out = width * expansion
        for b in range(depth):
            p = f"layer{s}.{b}."
            if expansion == 1:
                shapes |= {p + "conv1.weight": (width, inplanes, 3, 3), **bn(p + "bn1", width)}
                shapes |= {p + "conv2.weight": (out, width, 3, 3), **bn(p + "bn2", out)}
            else:
                shapes |= {p + "conv1.weight": (width, inplanes, 1, 1), **bn(p + "bn1", width)}
                shapes |= {p + "conv2.weight": (width, width, 3, 3), **bn(p + "bn2", width)}
                shapes |= {p + "conv3.weight": (out, width, 1, 1), **bn(p + "bn3", out)}
            if b == 0 and inplanes != out:  # a projection shortcut where the width changes
                shapes |= {p + "downsample.0.weight": (out, inplanes, 1, 1), **bn(p + "downsample.1", out)}
            inplanes = out
    return shapes | {"fc.weight": (classes, inplanes), "fc.bias": (classes,)}


def conv_mlp(shapes: dict) -> dict:
    """timm ConvNeXt with `conv_mlp=True`: the MLP's Linear [out, in] weights are 1x1 convolutions [out, in, 1, 1]."""
    return {n: (*s, 1, 1) if n.endswith(("mlp.fc1.weight", "mlp.fc2.weight")) else s for n, s in shapes.items()}


VIT_S = {"embed": 384, "depth": 4, "mlp": 1536}  # ViT-S/16 (6 heads), 4 of its 12 blocks to stay fast
VIT_TI = {"embed": 192, "depth": 2, "mlp": 768}  # ViT-Ti/16 (3 heads): every dim halves
VIT_ODD = {"embed": 100, "depth": 3, "mlp": 400}  # 384→100, 1152→300, 1536→400: all the linspace branch
CONVNEXT_T = {"depths": (3, 3, 9, 3), "dims": (96, 192, 384, 768)}
CONVNEXT_F = {"depths": (2, 2, 6, 2), "dims": (48, 96, 192, 384)}  # femto
CONVNEXT_ODD = {"depths": (1, 3, 2, 1), "dims": (40, 100, 160, 300)}  # none of these divide the teacher's


@pytest.fixture(scope="module")
def vit_teacher(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    state = random_state(vit_shapes(**VIT_S), seed=1)
    return save(tmp_path_factory.mktemp("vit") / "vit_small.safetensors", state), state


@pytest.fixture(scope="module")
def convnext_teacher(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    state = random_state(convnext_shapes(**CONVNEXT_T), seed=2)
    return save(tmp_path_factory.mktemp("convnext") / "convnext_tiny.safetensors", state), state


# ------------------------------------------------------------------------------------------ checks


def raw_bytes(t: torch.Tensor) -> bytes:
    return t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def init_and_check(
    teacher: Path,
    teacher_state: dict[str, torch.Tensor],
    student_shapes: dict[str, tuple[int, ...]],
    student_config: Path,
    out: Path,
    *extra: str,
) -> tuple[dict[str, torch.Tensor], dict]:
    """Run `wsel init --exclude 'head*' --json` and check the output against the paper's code."""
    result = run_cli(
        "init", "--teacher", teacher, "--student-config", student_config, "-o", out, "--exclude", "head*", "--json",
        *extra,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    written = load_file(str(out))

    heads = {n for n in student_shapes if n.startswith("head")}
    assert heads  # the exclusion really removes something
    assert set(written) == set(student_shapes) - heads
    assert not heads & set(written)
    for name, tensor in written.items():
        expected = uniform_element_selection(teacher_state[name], student_shapes[name])
        assert tensor.dtype == expected.dtype == torch.float32, name
        assert tuple(tensor.shape) == tuple(student_shapes[name]), name
        assert torch.equal(tensor, expected), name
        assert raw_bytes(tensor) == raw_bytes(expected), name  # bit for bit, signed zeros included

    assert sorted(report["excluded"]) == sorted(heads)
    by_name = {t["name"]: t for t in report["tensors"]}
    assert set(by_name) == set(student_shapes)
    for name in heads:
        assert by_name[name]["action"] == "exclude"
        assert by_name[name]["reason"] == "--exclude"
    for name in written:
        assert by_name[name]["teacher"] == name  # first-N: student block i reads teacher block i
        assert by_name[name]["shape"] == list(student_shapes[name])
    assert report["totals"]["tensors_written"] == len(written)
    assert report["run"]["files"] == [str(out)]
    return written, report


def layer_map_metadata(out: Path) -> dict:
    with safe_open(str(out), "pt") as f:
        meta = f.metadata()
    assert meta["format"] == "pt"
    return json.loads(meta["wsel.layer_map"])


# ------------------------------------------------------------------------------------------- tests


@pytest.mark.parametrize("student", [VIT_TI, VIT_ODD], ids=["vit_tiny", "vit_odd_widths"])
def test_vit_small_to_student(vit_teacher: tuple, student: dict, tmp_path: Path) -> None:
    teacher, state = vit_teacher
    shapes = vit_shapes(**student)
    out = tmp_path / "student.safetensors"
    # Divisible widths: q|k|v blocks kept apart (the default) coincide with the paper's flat stride.
    # Odd widths: `--attention flat` is the paper's rule itself, index by index.
    extra = () if student is VIT_TI else ("--attention", "flat")
    _, report = init_and_check(teacher, state, shapes, write_manifest(tmp_path / "s.json", shapes), out, *extra)

    depth = student["depth"]
    assert [(m["group"], m["teacher_layers"], m["map"]) for m in report["layer_maps"]] == [
        ("blocks", VIT_S["depth"], [[i, i] for i in range(depth)])
    ]
    assert layer_map_metadata(out) == {"blocks": list(range(depth))}
    qkv = next(t for t in report["tensors"] if t["name"] == "blocks.0.attn.qkv.weight")
    if student is VIT_TI:  # 1152 → 576 and 384 → 192: strides of 2
        assert [(d["rule"], d.get("step")) for d in qkv["dims"]] == [("stride", 2), ("stride", 2)]
    else:  # 1152 → 300 and 384 → 100 do not divide: the paper's rounded linspace, index by index
        expected = [torch.round(torch.linspace(0, n - 1, s)).long().tolist() for n, s in ((1152, 300), (384, 100))]
        assert [(d["rule"], d["indices"]) for d in qkv["dims"]] == [("indices", idx) for idx in expected]
        assert expected[1][:4] == [0, 4, 8, 12] and expected[1][-1] == 383
    # Positions are never shortened: 197 tokens in teacher and student.
    pos = next(t for t in report["tensors"] if t["name"] == "pos_embed")
    assert [(d["rule"], d["teacher"], d["student"]) for d in pos["dims"][:2]] == [("copy", 1, 1), ("copy", 197, 197)]
    assert (pos["dims"][2]["teacher"], pos["dims"][2]["student"]) == (384, student["embed"])
    assert pos["dims"][2]["rule"] == ("stride" if student is VIT_TI else "indices")


def test_vit_report_does_not_call_the_patch_embedding_a_vocabulary(vit_teacher: tuple, tmp_path: Path) -> None:
    """`patch_embed.proj.weight` is [embed, 3, 16, 16]: dim 0 is the hidden width, which the paper selects.

    The generic path's vocabulary/position warning must not fire for it (nor for anything in a ViT:
    `pos_embed` keeps its 197 positions and `cls_token` has a single row).
    """
    teacher, state = vit_teacher
    shapes = vit_shapes(**VIT_TI)
    _, report = init_and_check(
        teacher, state, shapes, write_manifest(tmp_path / "s.json", shapes), tmp_path / "student.safetensors"
    )
    assert report["warnings"] == []


def test_vit_template_student_gives_the_same_output(vit_teacher: tuple, tmp_path: Path) -> None:
    teacher, state = vit_teacher
    shapes = vit_shapes(**VIT_ODD)
    flat = ("--attention", "flat")  # odd widths: compared with the paper's flat rule
    from_manifest, _ = init_and_check(
        teacher, state, shapes, write_manifest(tmp_path / "s.json", shapes), tmp_path / "a.safetensors", *flat
    )
    template = save(tmp_path / "template" / "vit_student.safetensors", random_state(shapes, seed=9))
    from_template, report = init_and_check(teacher, state, shapes, template, tmp_path / "b.safetensors", *flat)
    assert report["student"]["kind"] == "template"
    assert not [w for w in report["warnings"] if "template dtype" in w]  # the template is F32, as written
    assert from_template.keys() == from_manifest.keys()
    for name in from_manifest:
        assert raw_bytes(from_template[name]) == raw_bytes(from_manifest[name]), name


@pytest.mark.parametrize("student", [CONVNEXT_F, CONVNEXT_ODD], ids=["convnext_femto", "convnext_odd_widths"])
def test_convnext_tiny_to_student(convnext_teacher: tuple, student: dict, tmp_path: Path) -> None:
    teacher, state = convnext_teacher
    shapes = convnext_shapes(**student)
    out = tmp_path / "student.safetensors"
    written, report = init_and_check(teacher, state, shapes, write_manifest(tmp_path / "s.json", shapes), out)

    # First-N per stage: each stage is its own layer group.
    expected_maps = [
        (f"stages.{s}.blocks", CONVNEXT_T["depths"][s], [[b, b] for b in range(d)])
        for s, d in enumerate(student["depths"])
    ]
    assert [(m["group"], m["teacher_layers"], m["map"]) for m in report["layer_maps"]] == expected_maps
    assert layer_map_metadata(out) == {f"stages.{s}.blocks": list(range(d)) for s, d in enumerate(student["depths"])}
    # The deepest student block of stage 2 is written (from the same teacher index, see init_and_check).
    assert f"stages.2.blocks.{student['depths'][2] - 1}.mlp.fc1.weight" in written
    # Depthwise kernels keep their 7x7 taps and the per-channel group dim.
    dw = next(t for t in report["tensors"] if t["name"] == "stages.0.blocks.0.conv_dw.weight")
    assert [d["rule"] for d in dw["dims"]][1:] == ["copy", "copy", "copy"]
    if student is CONVNEXT_ODD:
        assert dw["dims"][0]["rule"] == "indices"
        assert dw["dims"][0]["indices"] == torch.round(torch.linspace(0, 95, 40)).long().tolist()


def test_convnext_template_student_gives_the_same_output(convnext_teacher: tuple, tmp_path: Path) -> None:
    teacher, state = convnext_teacher
    shapes = convnext_shapes(**CONVNEXT_F)
    from_manifest, _ = init_and_check(
        teacher, state, shapes, write_manifest(tmp_path / "s.json", shapes), tmp_path / "a.safetensors"
    )
    template = save(tmp_path / "template" / "convnext_femto.safetensors", random_state(shapes, seed=5))
    from_template, report = init_and_check(teacher, state, shapes, template, tmp_path / "b.safetensors")
    assert report["student"]["kind"] == "template"
    assert from_template.keys() == from_manifest.keys()
    for name in from_manifest:
        assert raw_bytes(from_template[name]) == raw_bytes(from_manifest[name]), name


def test_vit_qkv_blocks_never_mix_by_default(vit_teacher: tuple, tmp_path: Path) -> None:
    # 1152 → 300 q|k|v rows: the timm name set splits them into three 384 → 100 blocks, each selected
    # by the paper's rule on its own, so every student q row is a teacher q row (likewise k and v).
    teacher, state = vit_teacher
    shapes = vit_shapes(**VIT_ODD)
    out = tmp_path / "student.safetensors"
    result = run_cli("init", "-t", teacher, "-s", write_manifest(tmp_path / "s.json", shapes), "-o", out,
                     "--exclude", "head*", "--json")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    block = torch.round(torch.linspace(0, 383, 100)).long()
    rows = torch.cat([b * 384 + block for b in range(3)])
    qkv = load_file(str(out))["blocks.1.attn.qkv.weight"]
    assert torch.equal(qkv, state["blocks.1.attn.qkv.weight"][rows][:, block])
    report = json.loads(result.stdout)
    assert report["path"] == "timm_vit"
    dims = next(t for t in report["tensors"] if t["name"] == "blocks.1.attn.qkv.weight")["dims"]
    assert dims[0]["axis"] == "attn | attn | attn" and dims[0]["rule"] == "composite"
    assert report["axes"]["attn"]["indices"] == block.tolist()


def test_fused_qkv_keeps_each_block_under_every_strategy(tmp_path: Path) -> None:
    """The name set splits timm's fused qkv rows into q|k|v blocks for every element strategy, not only the
    paper's (whose strides happen to coincide): `--elements first` on 8 → 4 wide keeps rows 0-3 of q, 8-11 of
    k and 16-19 of v. (An installed wsel once lacked the name sets and kept rows 0-11: all of q, half of k.)"""
    shapes = vit_shapes(embed=8, depth=1, mlp=16, classes=2, img=8, patch=4)
    state = random_state(shapes, seed=3)
    teacher = save(tmp_path / "vit.safetensors", state)
    student = write_manifest(tmp_path / "s.json", vit_shapes(embed=4, depth=1, mlp=8, classes=2, img=8, patch=4))
    out = tmp_path / "s.safetensors"
    result = run_cli("init", "-t", teacher, "-s", student, "-o", out, "--elements", "first", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["path"] == "timm_vit"
    qkv = load_file(str(out))["blocks.0.attn.qkv.weight"]  # [3 * 4, 4]
    rows = [*range(0, 4), *range(8, 12), *range(16, 20)]
    assert torch.equal(qkv, state["blocks.0.attn.qkv.weight"][rows][:, :4])


def test_name_set_tensor_with_other_dims_is_a_clean_error(tmp_path: Path) -> None:
    """A student tensor with another number of dims than its name-set teacher tensor: one line, exit 1."""
    shapes = vit_shapes(embed=8, depth=1, mlp=16, classes=2, img=8, patch=4)
    teacher = save(tmp_path / "vit.safetensors", random_state(shapes))
    student = write_manifest(tmp_path / "s.json", {"blocks.0.attn.qkv.weight": (12,)})
    result = run_cli("init", "-t", teacher, "-s", student, "-o", tmp_path / "out.safetensors")
    assert result.exit_code == 1
    assert result.stderr == (
        "wsel: error: student tensor 'blocks.0.attn.qkv.weight' [12] from teacher 'blocks.0.attn.qkv.weight' "
        "[24, 8]: the number of dims differs; fix the student config or --exclude it\n"
    )
    assert not (tmp_path / "out.safetensors").exists()


# --------------------------------------------------------------------------------- ResNet, conv_mlp

RESNET50 = {"depths": (3, 4, 6, 3), "widths": (64, 128, 256, 512)}  # outputs 256, 512, 1024, 2048
# ResNet-18's depths and stage widths (64, 128, 256, 512 out) in the teacher's Bottleneck layout
RESNET18_WIDTHS = {"depths": (2, 2, 2, 2), "widths": (16, 32, 64, 128)}
RESNET_ODD = {"depths": (1, 2, 3, 1), "widths": (24, 40, 100, 200), "stem": 48, "expansion": 3}  # linspace
RESNET34 = {"depths": (3, 4, 6, 3), "widths": (64, 128, 256, 512), "expansion": 1}
RESNET18 = {"depths": (2, 2, 2, 2), "widths": (32, 64, 128, 256), "stem": 32, "expansion": 1}  # half width


def check_against_the_paper(
    teacher_state: dict[str, torch.Tensor], student_shapes: dict[str, tuple[int, ...]], written: dict
) -> None:
    """Every written tensor is the paper's uniform_element_selection of its teacher tensor, on the dims they
    share (a 1x1 convolution and a Linear are the same weight: compared after a reshape), bit for bit."""
    assert set(written) == {n for n in student_shapes if not n.startswith(("head", "fc."))}
    for name, tensor in written.items():
        teacher = teacher_state[name]
        shared = student_shapes[name][: teacher.dim()] + (1,) * max(0, teacher.dim() - len(student_shapes[name]))
        expected = uniform_element_selection(teacher, shared).reshape(student_shapes[name])
        assert tensor.dtype == teacher.dtype and tuple(tensor.shape) == tuple(student_shapes[name]), name
        assert raw_bytes(tensor) == raw_bytes(expected), name


def resnet_state(shapes: dict, seed: int) -> dict[str, torch.Tensor]:
    state = random_state({n: s for n, s in shapes.items() if s}, seed=seed)
    for name, shape in shapes.items():
        if not shape:  # num_batches_tracked
            state[name] = torch.tensor(1000 + len(name), dtype=torch.int64)
    for name in state:
        if name.endswith("running_var"):
            state[name] = state[name].abs() + 0.5
    return state


@pytest.mark.parametrize(
    ("teacher_kind", "student_kind", "name_set"),
    [
        (RESNET50, RESNET18_WIDTHS, "timm_resnet_bottleneck"),
        (RESNET50, RESNET_ODD, "timm_resnet_bottleneck"),
        (RESNET34, RESNET18, "timm_resnet_basic"),
    ],
    ids=["resnet50_to_resnet18_widths", "resnet50_odd_widths", "resnet34_to_resnet18"],
)
def test_resnet_to_student(tmp_path: Path, teacher_kind: dict, student_kind: dict, name_set: str) -> None:
    state = resnet_state(resnet_shapes(**teacher_kind), seed=4)
    teacher = save(tmp_path / "teacher.safetensors", state)
    shapes = resnet_shapes(**student_kind)
    out = tmp_path / "student.safetensors"
    result = run_cli("init", "-t", teacher, "-s", write_manifest(tmp_path / "s.json", shapes), "-o", out,
                     "--exclude", "fc.*", "--json")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["path"] == name_set
    written = load_file(str(out))
    check_against_the_paper(state, shapes, written)
    # batch-norm statistics follow their channel axis; the step counters are copied as they are
    counters = [n for n in written if n.endswith("num_batches_tracked")]
    assert counters and all(torch.equal(written[n], state[n]) for n in counters)
    by_name = {t["name"]: t for t in report["tensors"]}
    assert by_name["layer2.0.bn1.running_var"]["dims"][0]["axis"] == "mlp@2"
    assert by_name["layer2.1.conv1.weight"]["dims"][1]["axis"] == "hidden@2"
    assert by_name["layer2.0.downsample.0.weight"]["dims"][1]["axis"] == "hidden@1"
    assert by_name["layer1.0.bn1.num_batches_tracked"]["action"] == "copy"
    assert run_cli("verify", "--teacher", teacher, "--student", out).exit_code == 0


@pytest.mark.parametrize("direction", ["linear_teacher", "conv_teacher"])
def test_convnext_conv_mlp_student(convnext_teacher: tuple, tmp_path: Path, direction: str) -> None:
    """timm `convnext_tiny` (Linear MLP [out, in]) → a `convnext_femto` manifest with `conv_mlp` (1x1 convs
    [out, in, 1, 1]), and the reverse: the same weight, selected on the shared dims and written in the student's
    form. (This pair once ended in `ValueError: zip() argument 2 is longer than argument 1`.)"""
    teacher, state = convnext_teacher
    shapes = convnext_shapes(**CONVNEXT_F)
    if direction == "linear_teacher":
        shapes = conv_mlp(shapes)
    else:
        state = {
            n: t.reshape(*t.shape, 1, 1) if n.endswith(("fc1.weight", "fc2.weight")) else t for n, t in state.items()
        }
        teacher = save(tmp_path / "convnext_tiny_conv_mlp.safetensors", state)
    out = tmp_path / "student.safetensors"
    result = run_cli("init", "-t", teacher, "-s", write_manifest(tmp_path / "s.json", shapes), "-o", out,
                     "--exclude", "head*", "--json")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["path"] == "timm_convnext"
    written = load_file(str(out))
    check_against_the_paper(state, shapes, written)
    fc1 = next(t for t in report["tensors"] if t["name"] == "stages.1.blocks.0.mlp.fc1.weight")
    assert fc1["shape"] == list(shapes["stages.1.blocks.0.mlp.fc1.weight"])
    assert [d["axis"] for d in fc1["dims"]][:2] == ["mlp@1", "hidden@1"]
    verified = run_cli("verify", "--teacher", teacher, "--student", out)
    assert verified.exit_code == 0, verified.stdout + verified.stderr


def test_conv_student_of_a_linear_teacher_with_real_kernels_is_a_clean_error(
    convnext_teacher: tuple, tmp_path: Path
) -> None:
    """Only trailing dims of size 1 reconcile a Linear with a convolution: a 3x3 kernel gets the catalogue's line."""
    teacher, _ = convnext_teacher
    student = write_manifest(tmp_path / "s.json", {"stages.0.blocks.0.mlp.fc1.weight": (192, 48, 3, 3)})
    result = run_cli("init", "-t", teacher, "-s", student, "-o", tmp_path / "out.safetensors")
    assert result.exit_code == 1
    assert result.stderr == (
        "wsel: error: student tensor 'stages.0.blocks.0.mlp.fc1.weight' [192, 48, 3, 3] from teacher "
        "'stages.0.blocks.0.mlp.fc1.weight' [384, 96]: the number of dims differs; fix the student config or "
        "--exclude it\n"
    )
    assert not (tmp_path / "out.safetensors").exists()
