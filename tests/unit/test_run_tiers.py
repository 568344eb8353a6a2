"""The tier runner's verdicts: a tier that runs nothing, or skips what it was not told to skip, fails (and says
which tests and why); the floor tier is the e2e directory on 1.29."""

from __future__ import annotations

import sys

import pytest

from tests.tools import run_tiers
from tests.tools.run_tiers import TierResult, skip_reasons, tier_command

# The short summary pytest prints with -rs (copied from a real run of a tier whose tool was missing).
SKIPPED_OUTPUT = """\
....ss
=========================== short test summary info ============================
SKIPPED [1] tests/tools/test_vllm_parser_smoke.py:21: vLLM parser venv missing
SKIPPED [12] tests/e2e/conftest.py:75: GEMMA4_SKIP_E2E=1: real control plane tests skipped
4 passed, 13 skipped in 1.20s
"""


def test_skip_reasons_are_read_from_the_short_summary() -> None:
    assert skip_reasons(SKIPPED_OUTPUT) == [
        "tests/tools/test_vllm_parser_smoke.py:21: vLLM parser venv missing",
        "tests/e2e/conftest.py:75: GEMMA4_SKIP_E2E=1: real control plane tests skipped (x12)",
    ]


@pytest.mark.parametrize(
    ("returncode", "counts", "ok", "problem"),
    [
        (0, {"passed": 10}, True, ""),
        (0, {"passed": 4, "skipped": 13}, False, "skipped 13 test(s) it was not told to skip"),
        (0, {"skipped": 140}, False, "ran no test"),  # pytest exits 0 when every test skipped
        (0, {"deselected": 30}, False, "ran no test"),
        (5, {}, False, ""),  # pytest's own "no tests collected"
        (1, {"passed": 3, "failed": 1}, False, ""),
    ],
)
def test_a_tier_that_runs_nothing_fails(returncode: int, counts: dict[str, int], ok: bool, problem: str) -> None:
    result = TierResult("e2e", returncode, 1.0, counts)
    assert result.ok is ok
    assert result.problem == problem


def test_the_floor_tier_is_the_e2e_directory_on_1_29() -> None:
    cmd, env = tier_command("e2e-floor", ["-x"])
    assert cmd[:2] == [sys.executable, "-m"]
    assert cmd[cmd.index("tests/e2e"):] == ["tests/e2e", "-m", "floor", "-x"]
    assert "-rs" in cmd  # skip reasons are printed, so that a skip can be named
    assert env == {"GEMMA4_K8S_RELEASE": "1.29"}
    assert tier_command("unit", [])[1] == {}


def test_gemma4_skip_e2e_leaves_the_e2e_tiers_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GEMMA4_SKIP_E2E", raising=False)
    assert {"e2e", "e2e-floor"} <= set(run_tiers.all_tiers())
    monkeypatch.setenv("GEMMA4_SKIP_E2E", "1")
    tiers = run_tiers.all_tiers()
    assert "e2e" not in tiers and "e2e-floor" not in tiers
    assert "unit" in tiers
