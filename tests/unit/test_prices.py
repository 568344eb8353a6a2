"""Accelerator prices: the catalog's indicative ones, and the user's own (--accelerator-price, env, Helm)."""

from __future__ import annotations

import pytest

from gemma4_operator.catalog import load_catalog
from gemma4_operator.cli.main import build_parser, main
from gemma4_operator.cli.run import config_from_args
from gemma4_operator.config import ConfigError, parse_prices

CATALOG = load_catalog()
EXAMPLE = "manifests/examples/31b-h100-bf16-tp2.yaml"


def test_every_accelerator_type_has_a_dated_price_with_a_source() -> None:
    assert set(CATALOG.prices) == {"cpu", *CATALOG.gpu_types}
    for name, price in CATALOG.prices.items():
        assert price.usd_per_hour > 0 and price.date and price.source, name


@pytest.mark.parametrize(("item", "problem"), [
    ("nvidia-h100-80gb", "expected TYPE=USD"),
    ("nvidia-h100=2", "a catalog accelerator type"),
    ("nvidia-h100-80gb=cheap", "a price per GPU-hour >= 0"),
    ("nvidia-h100-80gb=-1", "a price per GPU-hour >= 0"),
    ("nvidia-h100-80gb=nan", "a price per GPU-hour >= 0"),
])
def test_bad_prices_are_refused_naming_the_flag(item: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=f"--accelerator-price '{item}': .*{problem}"):
        parse_prices([item])


def test_the_plan_table_shows_the_cost_at_the_users_price(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", EXAMPLE, "--accelerator-price", "nvidia-h100-80gb=2.5"]) == 0
    assert "cost             $5.00 per replica-hour (indicative)" in capsys.readouterr().out  # 2 GPUs x 2.50


def test_a_bad_price_on_the_command_line_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", EXAMPLE, "--accelerator-price", "h100=2"]) == 1
    assert "--accelerator-price 'h100=2'" in capsys.readouterr().err


def test_the_operator_takes_prices_from_flags_or_environment() -> None:
    args = build_parser().parse_args(["run", "--accelerator-price", "nvidia-l4=0.5"])
    assert config_from_args(args, env={}).prices == {"nvidia-l4": 0.5}
    args = build_parser().parse_args(["run"])
    env = {"GEMMA4_ACCELERATOR_PRICES": "nvidia-l4=0.5,nvidia-b200=9"}
    assert config_from_args(args, env=env).prices == {"nvidia-l4": 0.5, "nvidia-b200": 9.0}
