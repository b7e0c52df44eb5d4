"""A bench report's ratios with a target: the table and the JSON say whether each one passed."""

from __future__ import annotations

from eventflo import bench
from eventflo.bench import report


def _report(*ratios: bench.Ratio) -> bench.Report:
    environment = bench.Environment(
        server_version="15.0",
        fsync="on",
        synchronous_commit="on",
        payload_bytes=41,
        cpu_count=2,
        scratch_database="x_bench_000000",
        kept=False,
        checkpoint_before_runs=True,
    )
    figure = bench.Figure("events_per_s", "catch-all rule", "events/s", (100.0,))
    results = (bench.ModeResult("rules-drain", (figure,), ratios),)
    return bench.Report(bench.Settings(), ("rules-drain",), environment, results, ratios)


def test_a_ratio_with_a_target_says_pass_or_fail_and_one_without_says_neither():
    shipped = bench.Ratio("shipped", "shipped / catch-all", 0.93, target=0.9)
    generated = bench.Ratio("generated", "generated / catch-all", 0.71, target=0.8)
    plain = bench.Ratio("drain_vs_floor", "drain / floor", 0.5)

    lines = report.render(_report(shipped, generated, plain)).splitlines()

    assert lines[-3].endswith("0.93  (93%)  pass (target ≥ 90%)")
    assert lines[-2].endswith("0.71  (71%)  FAIL (target ≥ 80%)")
    assert lines[-1].endswith("0.50  (50%)")
    ratios = report.to_json(_report(shipped, generated, plain))["ratios"]
    assert ratios["shipped"] == {
        "label": "shipped / catch-all",
        "value": 0.93,
        "target": 0.9,
        "passed": True,
    }
    assert ratios["generated"]["passed"] is False
    assert ratios["drain_vs_floor"]["target"] is None
    assert ratios["drain_vs_floor"]["passed"] is None
