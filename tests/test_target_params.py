"""--target-params: for Llama, Qwen2 (GQA) and Gemma teachers built by transformers, every candidate of three
budgets is written, loads in transformers with no missing or unexpected keys, and has exactly the parameter
count shown; the first is within 10% of the budget. Refusals and the report."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
import transformers as tf
from conftest import run_cli, write_manifest

import wsel

FAMILIES = {
    # hidden 512, head_dim 64, GQA groups of 2, 4 and 2; Gemma ties its embeddings
    "llama": (tf.LlamaConfig, tf.LlamaForCausalLM, dict(num_attention_heads=8, num_key_value_heads=4)),
    "qwen2": (tf.Qwen2Config, tf.Qwen2ForCausalLM, dict(num_attention_heads=8, num_key_value_heads=2)),
    "gemma": (tf.GemmaConfig, tf.GemmaForCausalLM, dict(num_attention_heads=8, num_key_value_heads=4, head_dim=64)),
}
BASE = dict(vocab_size=256, hidden_size=512, intermediate_size=1536, num_hidden_layers=8)
BUDGETS = ("25%", "50%", "3M")


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def teacher(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    config_class, model_class, extra = FAMILIES[request.param]
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp(request.param) / "teacher"
    model_class(config_class(**BASE, **extra)).save_pretrained(folder)
    return request.param, folder


@pytest.mark.parametrize("budget", BUDGETS)
def test_every_candidate_loads_with_the_count_shown(teacher: tuple[str, Path], budget: str, tmp_path: Path) -> None:
    name, folder = teacher
    _, model_class, _ = FAMILIES[name]
    index = wsel.open_teacher(folder)
    search = wsel.search_students(index, budget)
    assert len(search.candidates) == 5
    first = search.candidates[0]
    assert abs(first.parameters - search.budget) <= 0.10 * search.budget, (first, search.budget)
    assert search.note is None
    group = FAMILIES[name][2]["num_attention_heads"] // FAMILIES[name][2]["num_key_value_heads"]
    for i, candidate in enumerate(search.candidates):
        assert candidate.sizes["head_dim"] == 64 and candidate.sizes["heads"] == group * candidate.sizes["kv_heads"]
        assert candidate.sizes["hidden"] % 64 == 0 and candidate.sizes["mlp"] % 64 == 0
        out = tmp_path / f"c{i}"
        wsel.write_student(wsel.build_plan(index, sets=candidate.sets), f"{out}/")
        model, info = model_class.from_pretrained(out, output_loading_info=True)
        assert not any(info.values()), (candidate, info)
        assert model.num_parameters() == candidate.parameters, candidate
        assert candidate.parameters / search.teacher_parameters == pytest.approx(candidate.share, abs=1e-6)
    teacher_model = model_class.from_pretrained(folder)
    assert search.teacher_parameters == teacher_model.num_parameters()


def test_fixed_sizes_are_kept_and_only_the_free_ones_searched(teacher: tuple[str, Path]) -> None:
    _, folder = teacher
    search = wsel.search_students(folder, "40%", sets=["num_hidden_layers=4"])
    assert {c.sizes["layers"] for c in search.candidates} == {4}
    widths = wsel.search_students(folder, "40%", sets={"hidden_size": 256})
    assert {c.sizes["hidden"] for c in widths.candidates} == {256}
    assert abs(widths.candidates[0].parameters - widths.budget) <= 0.10 * widths.budget  # by depth alone


def test_a_budget_below_every_valid_shape_gets_the_nearest_and_why(teacher: tuple[str, Path]) -> None:
    _, folder = teacher
    search = wsel.search_students(folder, "20k")
    smallest = search.candidates[0].parameters
    assert smallest > 20_000
    assert search.note == (
        f"no valid student is within 10% of 20000 parameters; the nearest has {smallest} (the smallest possible "
        f"has {smallest}: its embeddings and the widths wsel may choose, multiples of 64, set the floor)"
    )


def test_init_uses_the_first_candidate_and_reports_them_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "1000")
    folder = tmp_path / "teacher"
    torch.manual_seed(0)
    tf.LlamaForCausalLM(tf.LlamaConfig(**BASE, num_attention_heads=8, num_key_value_heads=4)).save_pretrained(folder)
    out = tmp_path / "student"
    result = run_cli("init", "-t", folder, "--target-params", "30%", "-o", f"{out}/", "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    first = doc["search"]["candidates"][0]
    assert json.loads((out / "config.json").read_text()) | first["set"] == json.loads((out / "config.json").read_text())
    assert doc["totals"]["parameters"] == first["parameters"]  # untied: every parameter is written
    assert doc["search"]["budget"] == round(0.3 * doc["search"]["teacher_parameters"])
    shown = run_cli("inspect", "-t", folder, "--target-params", "30%")
    assert shown.exit_code == 0, shown.stderr
    row = (
        f"│ 1 │ {first['layers']} │ {first['hidden']} │ {first['heads']} │ {first['kv_heads']} │ {first['head_dim']} │ "
        f"{first['mlp']} │ {first['parameters']:,} │ {first['share']:.1%} │"
    )
    assert any(" ".join(line.split()) == row for line in shown.stderr.splitlines()), shown.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--target-params", "200%"), "--target-params 200%: {n} parameters is not between 1 and the teacher's {t}; "
         "a student cannot be larger than its teacher"),
        (("--target-params", "lots"),
         "--target-params lots: expected a count such as 1.5B, 500M, 120k, 25% or 1000000"),
    ],
)  # fmt: skip
def test_budgets_that_cannot_be_met_are_refused(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    folder = tmp_path / "teacher"
    tf.LlamaForCausalLM(tf.LlamaConfig(**BASE, num_attention_heads=8, num_key_value_heads=4)).save_pretrained(folder)
    teacher_parameters = wsel.search_students(folder, "50%").teacher_parameters
    result = run_cli("inspect", "-t", folder, *args)
    assert result.exit_code == 1
    expected = message.format(n=2 * teacher_parameters, t=teacher_parameters)
    assert result.stderr == f"wsel: error: {expected}\n"


def test_a_family_without_data_and_a_student_config_are_refused(tmp_path: Path) -> None:
    folder = tmp_path / "teacher"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "tinyformer", "hidden_size": 8}))
    wsel_file = folder / "model.safetensors"
    from conftest import save

    save(wsel_file, {"w": torch.zeros(8, 8)})
    result = run_cli("inspect", "-t", folder, "--target-params", "50%")
    assert result.exit_code == 1
    assert result.stderr.startswith(
        f"wsel: error: {folder / 'config.json'}: --target-params needs architecture data, and model_type "
        "'tinyformer' has none (it covers "
    )
    assert result.stderr.endswith("); give the student's sizes with --set instead\n")
    both = run_cli("inspect", "-t", folder, "--target-params", "50%", "-s", write_manifest(tmp_path / "s.json", {}))
    assert both.exit_code == 2
    assert "--target-params searches the teacher's config.json; leave out --student-config" in both.stderr


def test_the_readme_example_runs_as_written(capsys: pytest.CaptureFixture[str]) -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Choosing the student by a budget", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(code, "README.md", "exec"), {})
    said = re.search(r"# (\d+) (\d+) (\d+):", code)
    assert said is not None and capsys.readouterr().out == " ".join(said.groups()) + "\n"


def test_a_mixture_of_experts_keeps_the_experts_it_is_given(tmp_path: Path) -> None:
    """Experts are not searched: the teacher's count, or the one set; counts stay exact (every expert counted)."""
    folder = tmp_path / "mixtral"
    config = tf.MixtralConfig(vocab_size=256, hidden_size=256, intermediate_size=512, num_hidden_layers=4,
                              num_attention_heads=4, num_key_value_heads=2, num_local_experts=4,
                              num_experts_per_tok=2)  # fmt: skip
    tf.MixtralForCausalLM(config).save_pretrained(folder)
    for sets, experts in (((), 4), (("num_local_experts=2",), 2)):
        search = wsel.search_students(folder, "40%", sets=sets)
        first = search.candidates[0]
        out = tmp_path / f"student-{experts}"
        wsel.write_student(
            wsel.build_plan(folder, sets=[*sets, *(f"{k}={v}" for k, v in first.sets.items())]), f"{out}/"
        )
        model, info = tf.MixtralForCausalLM.from_pretrained(out, output_loading_info=True)
        assert not any(info.values()) and model.config.num_local_experts == experts
        assert model.num_parameters() == first.parameters
