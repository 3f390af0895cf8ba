"""Index sets: the paper's uniform rule, bit-exact against the paper's own code, and layer names."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import uniform_element_selection

from wsel import select
from wsel.layers import compact_ranges, find_layer, first_n


@st.composite
def teacher_and_student_sizes(draw: st.DrawFn) -> tuple[int, int]:
    teacher = draw(st.integers(1, 5000))
    return teacher, draw(st.integers(1, teacher))


@settings(max_examples=400, deadline=None)
@given(teacher_and_student_sizes())
def test_uniform_matches_the_papers_rule(sizes: tuple[int, int]) -> None:
    teacher, student = sizes
    expected = uniform_element_selection(torch.arange(teacher), (student,))
    assert select.uniform(teacher, student).indices().tolist() == expected.tolist()


@settings(max_examples=60, deadline=None)
@given(st.lists(teacher_and_student_sizes(), min_size=1, max_size=4))
def test_uniform_per_dim_equals_reference_on_random_tensors(dims: list[tuple[int, int]]) -> None:
    # Applying one Selection per dim (outer product) is what the paper's dim-by-dim index_select does.
    teacher_shape = tuple(min(t, 40) for t, _ in dims)
    student_shape = tuple(min(s, t) for (_, s), t in zip(dims, teacher_shape, strict=True))
    weights = torch.randn(teacher_shape)
    ours = weights.numpy()
    for dim, (t, s) in enumerate(zip(teacher_shape, student_shape, strict=True)):
        ours = np.take(ours, select.uniform(t, s).indices(), axis=dim)
    assert torch.equal(torch.from_numpy(ours), uniform_element_selection(weights, student_shape))


@pytest.mark.parametrize(
    ("teacher", "student", "described", "stored"),
    [
        (384, 192, "0:384:2", {"rule": "stride", "start": 0, "step": 2}),  # divisible: a stride from 0
        (384, 384, "copy", {"rule": "copy"}),  # equal sizes: the whole axis
        (1536, 512, "0:1536:3", {"rule": "stride", "start": 0, "step": 3}),
        (11, 4, "linspace[4]", {"rule": "indices", "indices": [0, 3, 7, 10]}),  # round(linspace(0, 10, 4))
        (10, 4, "0:10:3", {"rule": "stride", "start": 0, "step": 3}),  # round(linspace(0, 9, 4)) is a stride
        (5, 3, "0:5:2", {"rule": "stride", "start": 0, "step": 2}),  # linspace that happens to be a stride
        (7, 1, "0:7:7", {"rule": "stride", "start": 0, "step": 7}),  # 7 % 1 == 0: index 0 only
    ],
)
def test_uniform_known_sizes(teacher: int, student: int, described: str, stored: dict) -> None:
    sel = select.uniform(teacher, student)
    assert sel.describe() == described
    assert sel.to_dict().items() >= stored.items()
    assert sel.size == student


def test_uniform_rejects_a_larger_student() -> None:
    with pytest.raises(ValueError, match="student size 5 outside 0..4"):
        select.uniform(4, 5)


def test_same_axis_gets_the_same_selection_object() -> None:
    # Consistency: every tensor carrying a (teacher, student) axis shares one index set.
    assert select.uniform(768, 300) is select.uniform(768, 300)


@pytest.mark.parametrize(
    ("name", "group", "index", "rebuilt"),
    [
        ("model.layers.10.mlp.up_proj.weight", "model.layers", 10, "model.layers.3.mlp.up_proj.weight"),
        ("encoder.layer.0.attention.self.query.bias", "encoder.layer", 0, "encoder.layer.3.attention.self.query.bias"),
        ("transformer.h.11.attn.c_attn.weight", "transformer.h", 11, "transformer.h.3.attn.c_attn.weight"),
        ("blocks.2.attn.qkv.weight", "blocks", 2, "blocks.3.attn.qkv.weight"),
        ("stages.1.blocks.2.conv_dw.weight", "stages.1.blocks", 2, "stages.1.blocks.3.conv_dw.weight"),
    ],
)
def test_find_layer(name: str, group: str, index: int, rebuilt: str) -> None:
    ref = find_layer(name)
    assert ref is not None
    assert (ref.group, ref.index, ref.with_index(3)) == (group, index, rebuilt)


@pytest.mark.parametrize(
    "name",
    [
        "stages.1.downsample.1.weight",  # a stage's own tensor, not a repeated block
        "model.embed_tokens.weight",
        "highway.0.weight",  # `h` only as a whole path component
        "layers_norm.weight",
    ],
)
def test_find_layer_ignores_non_layer_names(name: str) -> None:
    assert find_layer(name) is None


def test_first_n_maps_in_order_and_describes_compactly() -> None:
    layer_map = first_n("model.layers", [0, 1, 2], list(range(8)))
    assert layer_map.mapping == ((0, 0), (1, 1), (2, 2))
    assert layer_map.describe() == "0-2 → 0-2 of 8"
    assert compact_ranges([5, 0, 1, 2, 7, 8]) == "0-2,5,7-8"


@settings(max_examples=300, deadline=None)
@given(st.integers(3, 400_000).flatmap(lambda t: st.tuples(st.just(t), st.integers(2, t - 1))))
def test_linspace_equals_torch_for_large_sizes(sizes: tuple[int, int]) -> None:
    # Vocabularies and wide MLPs: float32 error near .5 ties decides many indices; ours must match torch's.
    teacher, student = sizes
    expected = torch.round(torch.linspace(0, teacher - 1, student)).long().numpy()
    assert np.array_equal(select._torch_linspace_rounded(teacher, student), expected)


# Sizes with values near .5 ties: float32 error rounds some of them (30 to 593 here, all but the first) to the
# other side than exact arithmetic would, and torch's kernels disagree on them.
NEAR_TIES = [(8192, 3000), (61826, 29451), (247595, 115807), (49212, 30175), (113563, 89327)]
LINSPACE_IN_TORCH = """
import json, sys, torch
print(json.dumps([torch.backends.cpu.get_cpu_capability(),
                  [torch.round(torch.linspace(0, t - 1, s)).long().tolist() for t, s in json.loads(sys.argv[1])]]))
"""


def torch_linspace_under(capability: str) -> tuple[str, list[list[int]]]:
    env = dict(os.environ, ATEN_CPU_CAPABILITY=capability)
    done = subprocess.run(
        [sys.executable, "-c", LINSPACE_IN_TORCH, json.dumps(NEAR_TIES)], env=env, capture_output=True, check=True
    )
    used, indices = json.loads(done.stdout)
    return used, indices


@pytest.mark.parametrize("capability", ["avx2", "avx512"])
def test_linspace_equals_torchs_vectorized_kernels(capability: str) -> None:
    used, indices = torch_linspace_under(capability)
    assert used == capability.upper()  # the machine ran the kernel asked for
    assert [select._torch_linspace_rounded(t, s).tolist() for t, s in NEAR_TIES] == indices


def test_torchs_unvectorized_kernel_rounds_differently() -> None:
    # The paper's code gives other indices under torch's plain C++ kernel (two roundings, no fused multiply-add):
    # wsel follows the vectorized kernels every AVX2 machine runs, on any machine.
    used, indices = torch_linspace_under("default")
    assert used == "DEFAULT"
    ours = [select._torch_linspace_rounded(t, s).tolist() for t, s in NEAR_TIES]
    differ = [pair for pair, a, b in zip(NEAR_TIES, ours, indices, strict=True) if a != b]
    assert differ == NEAR_TIES


def test_uniform_never_imports_torch() -> None:
    code = "import sys\nfrom wsel.select import uniform\nuniform(8192, 3000)\nprint('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout == "False\n"
