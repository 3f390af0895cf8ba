"""Every family, name set and planning path writes exactly the files it wrote when the golden digests were
recorded (`tests/golden.py`): restructuring the code may not change a byte of any output or report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from golden import GOLDEN_FILE, cases, run_case

GOLDEN = json.loads(GOLDEN_FILE.read_text())


def test_every_case_has_a_golden_record() -> None:
    assert sorted(GOLDEN) == sorted(cases())


@pytest.mark.parametrize("name", sorted(cases()))
def test_outputs_equal_the_golden_digests(tmp_path: Path, name: str) -> None:
    assert run_case(cases()[name], tmp_path) == GOLDEN[name]
