"""Smoke test of the scrape benchmark: a few pods of each kind, a few rounds, the real scraper in its own process."""

from __future__ import annotations

from tests.benchmarks.scrape.run import run_one, table

OVER = "metrics body exceeds 1 MiB (the operator's limit); the rest was not read"


def test_hostile_pods_cost_the_scraper_a_bounded_amount() -> None:
    good = run_one("good", 4, rounds=3, hostile_bytes=16 << 20)
    hostile = run_one("hostile", 4, rounds=3, hostile_bytes=16 << 20)
    assert good.outcomes == {"ok": 12}
    assert hostile.outcomes == {OVER: 12}
    # 16 MiB answers, read to 1 MiB each in 64 KiB chunks: the peak stays within a few MiB of the good pods'
    assert hostile.peak_mib < good.peak_mib + 16, table([good, hostile])
    assert "hostile (endless body)" in table([good, hostile])
