"""Attention structure with architecture data: whole heads, GQA groups, RoPE pairs, fused blocks.

Teachers here are hand-built checkpoints whose values encode their own row (or column) index,
so every student row can be traced back to the exact teacher row it came from.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import run_cli, save
from reference import uniform_element_selection
from safetensors.torch import load_file

from wsel.errors import PlanError
from wsel.selector import rope_head_dim


def row_ids(rows: int, cols: int) -> torch.Tensor:
    """[rows, cols] whose every entry is its row index (exact in float32 for small sizes)."""
    return torch.arange(rows, dtype=torch.float32)[:, None].expand(rows, cols).contiguous()


def llama_teacher(folder: Path, hidden=64, heads=8, kv_heads=4, head_dim=8, mlp=96, layers=2, extra=None) -> Path:
    config = {
        "model_type": "llama",
        "hidden_size": hidden,
        "intermediate_size": mlp,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "head_dim": head_dim,
        "vocab_size": 16,
        "tie_word_embeddings": True,
        **(extra or {}),
    }
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config))
    tensors = {"model.embed_tokens.weight": torch.randn(16, hidden), "model.norm.weight": torch.randn(hidden)}
    for i in range(layers):
        p = f"model.layers.{i}."
        tensors |= {
            p + "input_layernorm.weight": torch.randn(hidden),
            p + "post_attention_layernorm.weight": torch.randn(hidden),
            p + "self_attn.q_proj.weight": row_ids(heads * head_dim, hidden),
            p + "self_attn.k_proj.weight": row_ids(kv_heads * head_dim, hidden),
            p + "self_attn.v_proj.weight": row_ids(kv_heads * head_dim, hidden),
            p + "self_attn.o_proj.weight": row_ids(heads * head_dim, hidden).T.contiguous(),  # columns carry ids
            p + "mlp.gate_proj.weight": torch.randn(mlp, hidden),
            p + "mlp.up_proj.weight": torch.randn(mlp, hidden),
            p + "mlp.down_proj.weight": torch.randn(hidden, mlp),
        }
    save(folder / "model.safetensors", tensors)
    return folder


def init(teacher: Path, out: Path, *sets: str, extra: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    args = ["init", "-t", teacher, "-o", out, "-q", *extra]
    for s in sets:
        args += ["--set", s]
    result = run_cli(*args)
    assert result.exit_code == 0, result.stderr
    return load_file(out / "model.safetensors")


def test_whole_heads_and_gqa_groups_are_kept(tmp_path: Path) -> None:
    # Teacher: 8 query heads in 4 KV groups of 2 (query head h reads KV head h // 2).
    # Student: 4 query heads in 2 KV groups of 2, head_dim unchanged.
    teacher = llama_teacher(tmp_path / "t")
    out = init(teacher, tmp_path / "s", "hidden_size=32", "num_attention_heads=4", "num_key_value_heads=2")
    q = out["model.layers.0.self_attn.q_proj.weight"][:, 0].long().view(4, 8)  # [student heads, head_dim]
    k = out["model.layers.0.self_attn.k_proj.weight"][:, 0].long().view(2, 8)
    v = out["model.layers.0.self_attn.v_proj.weight"][:, 0].long().view(2, 8)
    o = out["model.layers.0.self_attn.o_proj.weight"][0].long().view(4, 8)
    # Every student head is a whole teacher head: 8 consecutive teacher rows starting at a head boundary.
    for head in (*q, *k, *v, *o):
        assert head.tolist() == list(range(int(head[0]), int(head[0]) + 8)) and int(head[0]) % 8 == 0
    q_heads, kv_heads = (q[:, 0] // 8).tolist(), (k[:, 0] // 8).tolist()
    assert kv_heads == [0, 2]  # KV heads chosen first: uniform over 4 → 2
    assert q_heads == [0, 1, 4, 5]  # each kept group keeps its query heads
    assert (v[:, 0] // 8).tolist() == kv_heads and torch.equal(o, q)  # v follows k; o's columns follow q
    # Every student query head j reads student KV head j // 2; its teacher head read teacher KV head h // 2.
    for j, h in enumerate(q_heads):
        assert kv_heads[j // 2] == h // 2


def test_query_heads_within_a_group_are_thinned_uniformly(tmp_path: Path) -> None:
    # Teacher 8 query heads / 2 KV heads (groups of 4); student 4 / 2 (groups of 2): heads 0,2 | 4,6.
    teacher = llama_teacher(tmp_path / "t", kv_heads=2)
    out = init(teacher, tmp_path / "s", "num_attention_heads=4", "num_key_value_heads=2", "head_dim=8")
    q = out["model.layers.1.self_attn.q_proj.weight"][:, 0].long().view(4, 8)
    assert (q[:, 0] // 8).tolist() == [0, 2, 4, 6]


def test_flat_attention_is_the_papers_rule(tmp_path: Path) -> None:
    teacher = llama_teacher(tmp_path / "t")
    structured = init(teacher, tmp_path / "a", "hidden_size=32", "num_attention_heads=4", "num_key_value_heads=2")
    flat = init(
        teacher, tmp_path / "b", "hidden_size=32", "num_attention_heads=4", "num_key_value_heads=2",
        extra=("--attention", "flat"),
    )  # fmt: skip
    teacher_q = load_file(teacher / "model.safetensors")["model.layers.0.self_attn.q_proj.weight"]
    assert torch.equal(flat["model.layers.0.self_attn.q_proj.weight"], uniform_element_selection(teacher_q, (32, 32)))
    # The flat rule keeps every other row: half of each of all 8 teacher heads, not 4 whole heads.
    assert flat["model.layers.0.self_attn.q_proj.weight"][:, 0].long().tolist() == list(range(0, 64, 2))
    assert not torch.equal(
        flat["model.layers.0.self_attn.q_proj.weight"], structured["model.layers.0.self_attn.q_proj.weight"]
    )


@pytest.mark.parametrize(
    ("teacher_dim", "student_dim", "fraction", "kept"),
    [
        (16, 8, 1.0, [0, 2, 4, 6, 8, 10, 12, 14]),  # every 2nd rotary pair, both halves
        (16, 4, 1.0, [0, 4, 8, 12]),
        (16, 16, 1.0, list(range(16))),
        # Partial rotary (half the dims rotate): rotary dims 8 → 4 keep pairs (0,4),(2,6); the rest by the paper's rule.
        (16, 8, 0.5, [0, 2, 4, 6, 8, 10, 12, 14]),
    ],
)
def test_rope_head_dim_keeps_pairs(teacher_dim: int, student_dim: int, fraction: float, kept: list[int]) -> None:
    assert rope_head_dim(teacher_dim, student_dim, fraction).indices().tolist() == kept


@pytest.mark.parametrize(
    ("teacher_dim", "student_dim", "fraction", "kept"),
    [
        (16, 8, 1.0, [0, 1, 4, 5, 8, 9, 12, 13]),  # interleaved pairs (2i, 2i+1): every 2nd pair, side by side
        (16, 4, 1.0, [0, 1, 8, 9]),
        (8, 8, 1.0, list(range(8))),
        # partial rotary: rotary dims 8 → 4 keep pairs (0,1),(4,5); the other 8 → 4 by the paper's rule
        (16, 8, 0.5, [0, 1, 4, 5, 8, 10, 12, 14]),
    ],
)
def test_interleaved_rope_head_dim_keeps_adjacent_pairs(
    teacher_dim: int, student_dim: int, fraction: float, kept: list[int]
) -> None:
    assert rope_head_dim(teacher_dim, student_dim, fraction, interleaved=True).indices().tolist() == kept


def test_rope_head_dim_impossible_reduction_says_what_works() -> None:
    with pytest.raises(PlanError) as exc:
        rope_head_dim(16, 6, 1.0)
    assert str(exc.value) == (
        "head_dim 16 → 6 cannot keep RoPE pairs and frequencies (rotary dims 16 → 6); "
        "head_dim sizes that work: 2, 4, 8, 16"
    )  # the fix (a key to set) is the size check's to say: it knows the family's keys


@pytest.mark.parametrize("fraction", [1.0, 0.5])
def test_student_rotary_embedding_equals_the_teachers_on_the_kept_dims(fraction: float) -> None:
    # Apply the transformers RoPE implementation (rotate_half) to a teacher head and to the selected
    # dims with the student's head_dim: the kept dims must come out identical, same rope_theta.
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding, apply_rotary_pos_emb

    teacher_dim, student_dim, theta = 32, 8, 10000.0

    def rotate(x: torch.Tensor, head_dim: int) -> torch.Tensor:
        rotary = int(head_dim * fraction)
        config = LlamaConfig(hidden_size=head_dim, num_attention_heads=1, head_dim=rotary, rope_theta=theta)
        positions = torch.arange(x.shape[-2])[None]
        cos, sin = LlamaRotaryEmbedding(config)(x, positions)
        x_rot, x_pass = x[..., :rotary], x[..., rotary:]
        rotated, _ = apply_rotary_pos_emb(x_rot, x_rot, cos, sin)
        return torch.cat([rotated, x_pass], dim=-1)

    q = torch.randn(1, 2, 11, teacher_dim, dtype=torch.float64)  # [batch, heads, positions, head_dim]
    kept = rope_head_dim(teacher_dim, student_dim, fraction).indices()
    teacher_rotated = rotate(q, teacher_dim)[..., kept]
    student_rotated = rotate(q[..., kept], student_dim)
    torch.testing.assert_close(student_rotated, teacher_rotated, rtol=1e-6, atol=1e-6)


def test_head_dim_halved_under_rope_selects_per_head_pairs(tmp_path: Path) -> None:
    # head_dim 8 → 4 with 8 → 4 heads: each student head holds dims 0,2,4,6 of one whole teacher head.
    teacher = llama_teacher(tmp_path / "t")
    out = init(teacher, tmp_path / "s", "num_attention_heads=4", "num_key_value_heads=2", "head_dim=4")
    q = out["model.layers.0.self_attn.q_proj.weight"][:, 0].long().view(4, 4)
    assert q.tolist() == [[h * 8 + d for d in (0, 2, 4, 6)] for h in (0, 1, 4, 5)]
    # v rows and o columns share their own per-head set (the paper's rule: also 0,2,4,6 here).
    o = out["model.layers.0.self_attn.o_proj.weight"][0].long().view(4, 4)
    assert o.tolist() == q.tolist()


def phi3_teacher(folder: Path) -> Path:
    hidden, heads, kv, head_dim, mlp = 32, 4, 2, 8, 48
    folder.mkdir(parents=True)
    config = {
        "model_type": "phi3",
        "hidden_size": hidden,
        "intermediate_size": mlp,
        "num_hidden_layers": 1,
        "num_attention_heads": heads,
        "num_key_value_heads": kv,
        "vocab_size": 16,
        "tie_word_embeddings": False,
    }
    (folder / "config.json").write_text(json.dumps(config))
    p = "model.layers.0."
    tensors = {
        "model.embed_tokens.weight": torch.randn(16, hidden),
        "lm_head.weight": torch.randn(16, hidden),
        "model.norm.weight": torch.randn(hidden),
        p + "input_layernorm.weight": torch.randn(hidden),
        p + "post_attention_layernorm.weight": torch.randn(hidden),
        p + "self_attn.qkv_proj.weight": row_ids((heads + 2 * kv) * head_dim, hidden),
        p + "self_attn.o_proj.weight": torch.randn(hidden, heads * head_dim),
        p + "mlp.gate_up_proj.weight": row_ids(2 * mlp, hidden),
        p + "mlp.down_proj.weight": torch.randn(hidden, mlp),
    }
    save(folder / "model.safetensors", tensors)
    return folder


def test_phi3_fused_blocks_never_mix(tmp_path: Path) -> None:
    teacher = phi3_teacher(tmp_path / "t")
    out = init(teacher, tmp_path / "s", "hidden_size=16", "num_attention_heads=2", "num_key_value_heads=1",
               "intermediate_size=24")  # fmt: skip
    qkv = out["model.layers.0.self_attn.qkv_proj.weight"][:, 0].long()
    # Teacher rows: q 0-31 (4 heads), k 32-47 (2 KV heads), v 48-63. Student: KV head 0 with both of
    # its query heads 0 and 1 (rows 0-15), k head 0 (rows 32-39), v head 0 (rows 48-55).
    assert qkv.tolist() == [*range(0, 16), *range(32, 40), *range(48, 56)]
    gate_up = out["model.layers.0.mlp.gate_up_proj.weight"][:, 0].long()
    # gate rows 0-47, up rows 48-95: each half keeps its own every-other row.
    assert gate_up.tolist() == [*range(0, 48, 2), *range(48, 96, 2)]
    # The paper's flat rule would have mixed them: check it really differs.
    assert uniform_element_selection(torch.arange(64), (32,)).tolist() != qkv.tolist()


def test_gpt2_fused_c_attn_columns_never_mix(tmp_path: Path) -> None:
    hidden, heads, positions = 32, 4, 20
    folder = tmp_path / "t"
    folder.mkdir()
    config = {"model_type": "gpt2", "n_embd": hidden, "n_layer": 1, "n_head": heads, "n_positions": positions,
              "vocab_size": 16}  # fmt: skip
    (folder / "config.json").write_text(json.dumps(config))
    p = "transformer.h.0."
    tensors = {
        "transformer.wte.weight": torch.randn(16, hidden),
        "transformer.wpe.weight": row_ids(positions, hidden),
        "transformer.ln_f.weight": torch.randn(hidden),
        "transformer.ln_f.bias": torch.randn(hidden),
        p + "ln_1.weight": torch.randn(hidden),
        p + "ln_1.bias": torch.randn(hidden),
        p + "ln_2.weight": torch.randn(hidden),
        p + "ln_2.bias": torch.randn(hidden),
        p + "attn.c_attn.weight": row_ids(3 * hidden, hidden).T.contiguous(),  # Conv1D [in, out]: columns carry ids
        p + "attn.c_attn.bias": torch.arange(3 * hidden, dtype=torch.float32),
        p + "attn.c_proj.weight": torch.randn(hidden, hidden),
        p + "attn.c_proj.bias": torch.randn(hidden),
        p + "mlp.c_fc.weight": torch.randn(hidden, 4 * hidden),
        p + "mlp.c_fc.bias": torch.randn(4 * hidden),
        p + "mlp.c_proj.weight": torch.randn(4 * hidden, hidden),
        p + "mlp.c_proj.bias": torch.randn(hidden),
    }
    save(folder / "model.safetensors", tensors)
    out = init(folder, tmp_path / "s", "n_embd=16", "n_head=2", "n_positions=10")
    columns = out[p + "attn.c_attn.weight"][0].long().tolist()
    # q, k, v blocks of 32 columns (4 heads of 8); the student keeps heads 0 and 2 of each block.
    expected = [b * 32 + h * 8 + d for b in range(3) for h in (0, 2) for d in range(8)]
    assert columns == expected
    assert out[p + "attn.c_attn.bias"].long().tolist() == expected
    # Positions are truncated (first 10), never subsampled.
    assert out["transformer.wpe.weight"][:, 0].long().tolist() == list(range(10))
