"""The wheel ships the whole package, architecture data included, and `make test` tests that wheel.

A wheel built from this repo holds exactly the files of `wsel/` (its `__pycache__` aside), at the same paths: a
data file missing from pyproject's package-data (as `wsel/arch/names/*.json` once was) would make an installed
wsel behave unlike the source tree. Under `make test` (WSEL_TEST_INSTALLED=1) the imported wsel is the
installed wheel, and it holds the source tree's architecture data byte for byte."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "wsel"
INSTALLED = os.environ.get("WSEL_TEST_INSTALLED") == "1"


def files_under(folder: Path) -> dict[str, Path]:
    """Every file below `folder` by its relative POSIX path, `__pycache__` folders skipped."""
    return {
        path.relative_to(folder).as_posix(): path
        for path in folder.rglob("*")
        if path.is_file() and "__pycache__" not in path.relative_to(folder).parts
    }


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """The files of a wheel built from the repo's source, by path in the wheel.

    Built from a copy of the repo's top-level files and `wsel/`: setuptools reuses the `build/` folder of an
    in-place build, and would ship files deleted from `wsel/` since an earlier build."""
    tmp = tmp_path_factory.mktemp("wheel")
    src, out = tmp / "src", tmp / "out"
    src.mkdir()
    for path in ROOT.iterdir():
        if path.is_file():
            shutil.copy2(path, src / path.name)
    shutil.copytree(SOURCE, src / "wsel", ignore=shutil.ignore_patterns("__pycache__"))
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(src)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:] + done.stdout[-4000:]
    [built] = out.glob("wsel-*.whl")
    with zipfile.ZipFile(built) as zf:
        return {name: zf.read(name) for name in zf.namelist() if not name.endswith("/")}


def test_wheel_ships_every_architecture_data_file(wheel: dict[str, bytes]) -> None:
    arch = files_under(SOURCE / "arch")
    assert any(name.startswith("names/") for name in arch)  # the name sets this test was written for
    missing = sorted(f"wsel/arch/{name}" for name in arch if f"wsel/arch/{name}" not in wheel)
    assert missing == []
    differ = sorted(name for name, path in arch.items() if wheel[f"wsel/arch/{name}"] != path.read_bytes())
    assert differ == []


def test_wheel_holds_exactly_the_source_package(wheel: dict[str, bytes]) -> None:
    source = {f"wsel/{name}" for name in files_under(SOURCE)}
    shipped = {name for name in wheel if name.startswith("wsel/")}
    assert sorted(source - shipped) == []  # missing from the wheel
    assert sorted(shipped - source) == []  # in the wheel, not in the source tree


@pytest.mark.skipif(not INSTALLED, reason="`make test` only (WSEL_TEST_INSTALLED=1): wsel installed from the wheel")
def test_installed_wsel_is_the_wheel_with_its_data() -> None:
    import wsel

    installed = Path(wsel.__file__).resolve().parent
    assert installed != SOURCE
    assert not installed.is_relative_to(SOURCE)
    arch = files_under(SOURCE / "arch")
    assert any(name.startswith("names/") for name in arch)
    copies = {name: installed / "arch" / name for name in arch}
    missing = sorted(name for name, copy in copies.items() if not copy.is_file())
    assert missing == []
    differ = sorted(name for name, copy in copies.items() if copy.read_bytes() != arch[name].read_bytes())
    assert differ == []
