"""The ``outbox-drain`` mode: what writing deliveries costs the drain, side by side in one run.

Two drains of ``--events`` events per run, by the real worker processes:
one with no endpoint, one with an endpoint whose filter (``true``) matches
every verdict, so each completed event also writes a delivery in its
batch's transaction. The same events each time; the two drains follow each
other directly, every other run in the reverse order, and the ratio is the
median of the runs' own ratios (target 80 %). Each drain with the endpoint
is checked to have written exactly one delivery per event. Nothing is sent
(no deliverer runs; the endpoint names the discard port of this machine),
and the endpoint goes with its deliveries after each drain.
"""

from __future__ import annotations

from eventflo import endpoints
from eventflo.bench import QUERIES, Bench, BenchError, ModeResult, Ratio, Sample, drain, figures

SUMMARY = "the drain with no endpoint and with one matching every verdict, interleaved in each run"

TARGET = 0.80
ENDPOINT = "eventflo-bench"


def run(bench: Bench) -> ModeResult:
    runs = iter(range(bench.settings.runs))

    def once() -> Sample:
        sample: Sample = {}
        ways = (False, True) if next(runs) % 2 == 0 else (True, False)
        for with_endpoint in ways:
            key = "one_endpoint" if with_endpoint else "no_endpoint"
            sample[f"{key}_events_per_s"] = _drain(bench, with_endpoint=with_endpoint)
        sample["ratio"] = sample["one_endpoint_events_per_s"] / sample["no_endpoint_events_per_s"]
        return sample

    samples = bench.repeat("outbox-drain", once)
    result = figures(
        samples,
        [
            ("no_endpoint_events_per_s", "no endpoint", "events/s"),
            ("one_endpoint_events_per_s", "one endpoint matching every verdict", "events/s"),
            ("ratio", "one endpoint / none, each run", "ratio"),
        ],
    )
    by_key = {figure.key: figure.median for figure in result}
    return ModeResult(
        "outbox-drain",
        result,
        (
            Ratio(
                "outbox_drain_one_endpoint_vs_none",
                "drain writing a delivery per event / writing none (median of the runs' ratios)",
                by_key["ratio"],
                TARGET,
            ),
        ),
    )


def _drain(bench: Bench, *, with_endpoint: bool) -> float:
    label = "one endpoint" if with_endpoint else "no endpoint"
    with bench.connect("setup") as conn:
        conn.execute(QUERIES["remove_bench_endpoints"])
        if with_endpoint:
            endpoints.create(
                conn,
                name=ENDPOINT,
                url="http://127.0.0.1:9/eventflo-bench",  # the discard port: nothing listens
                filter="true",
                allow_private=True,
            )
    bench.progress(f"outbox-drain: {label}")
    sample = drain.drain_once(bench, clear="truncate_events")
    with bench.connect("verify") as conn:
        row = conn.execute(QUERIES["count_deliveries"]).fetchone()
        conn.execute(QUERIES["remove_bench_endpoints"])
    expected = bench.settings.events if with_endpoint else 0
    if row is None or row["deliveries"] != expected:
        raise BenchError(
            f"outbox-drain, {label}: {row['deliveries'] if row else '?'} deliveries written,"
            f" {expected:,} expected"
        )
    return sample["events_per_s"]
