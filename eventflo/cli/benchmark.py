"""``eventflo bench``: measure throughput on this machine (the bench is imported only here)."""

from __future__ import annotations

import json
import pathlib
import sys
from typing import TYPE_CHECKING

import click

from eventflo.cli.context import CliState, pass_state

if TYPE_CHECKING:
    from eventflo import rules


@click.command("bench")
@click.argument("modes", nargs=-1, metavar="[MODE]...")
@click.option(
    "--events",
    type=click.IntRange(min=1),
    default=100_000,
    show_default=True,
    help="Events per run.",
)
@click.option(
    "--workers", type=click.IntRange(min=1), default=4, show_default=True, help="Worker processes."
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="Events a worker claims at once.",
)
@click.option(
    "--runs",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="Runs per figure; the report shows their median and min-max.",
)
@click.option(
    "--growth-rows",
    type=click.IntRange(min=1),
    default=1_000_000,
    show_default=True,
    help="Completed events stored for the second half of the growth mode.",
)
@click.option(
    "--latency-events",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="Events sent one at a time per path in the latency mode.",
)
@click.option(
    "--clients",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="Concurrent HTTP clients in the ingest mode.",
)
@click.option(
    "--ingest-requests",
    type=click.IntRange(min=1),
    default=5000,
    show_default=True,
    help="Single-event POSTs per ingest run (the batch run sends 10x as many events).",
)
@click.option(
    "--held-seconds",
    type=click.FloatRange(min=1),
    default=120,
    show_default=True,
    help="Length of a held-xmin run; its first and last windows are 10% of it "
    "(at least 10 s, at most half).",
)
@click.option(
    "--memory-events",
    type=click.IntRange(min=2),
    default=200_000,
    show_default=True,
    help="Events the one worker drains per memory run.",
)
@click.option(
    "--memory-first-events",
    type=click.IntRange(min=1),
    default=10_000,
    show_default=True,
    help="Events after which the memory mode takes its first RSS reading.",
)
@click.option(
    "--rules",
    "rules_file",
    type=click.Path(exists=True, dir_okay=False, path_type=pathlib.Path),
    help="A rule file the workers judge with: stored and made active in the scratch database"
    " before the modes run (default: the shipped rules).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--keep", is_flag=True, help="Keep the scratch database afterwards.")
@pass_state
def bench_command(
    state: CliState,
    modes: tuple[str, ...],
    events: int,
    workers: int,
    batch_size: int,
    runs: int,
    growth_rows: int,
    latency_events: int,
    clients: int,
    ingest_requests: int,
    held_seconds: float,
    memory_events: int,
    memory_first_events: int,
    rules_file: pathlib.Path | None,
    as_json: bool,
    keep: bool,
) -> None:
    """Measure throughput on this machine, like pgbench does for PostgreSQL.

    MODE is one or more of: drain (the real workers drain N queued events),
    floor (the minimal raw-SQL claim/complete loop, for comparison), growth
    (drain with an empty table vs with --growth-rows completed events
    stored), latency (one event at a time through idle workers, by SQL and
    through the HTTP API: p50/p95/p99), ingest (--clients concurrent clients
    POST events to the API under gunicorn, with and without the NOTIFY
    trigger, and in batches of 1,000), held-xmin (ingest and processing for
    --held-seconds while a REPEATABLE READ snapshot is held open: events/s in
    the first and last window, dead tuples at start and end), memory (one
    worker process drains --memory-events events: its RSS after
    --memory-first-events and at the end), rules (µs per classification,
    median and p99, with the shipped rules and a generated 200-rule set over
    50 event types; --events classifications per set; needs no database),
    rules-drain (the drain judged by a catch-all rule, the shipped rules and
    the generated set, interleaved in each run: events/s of each and the
    ratios shipped / catch-all, target 90 %, and generated / catch-all on
    the same events, target 80 %), outbox-drain (the drain with no endpoint
    and with one whose filter matches every verdict, so each event also
    writes a delivery: events/s of both and their ratio, target 80 %),
    deliver (--events deliveries sent by 2 deliver processes to a local
    receiver: deliveries/s, target 1,000; then one at a time: created →
    delivered p50/p99). Default: drain floor.

    Runs in a scratch database created on the configured server (the role
    needs CREATEDB) and dropped at the end; your data is never touched. The
    rules mode alone needs no database and creates none.
    """
    from eventflo import bench
    from eventflo.bench import report

    unknown = [mode for mode in modes if mode not in bench.MODE_NAMES]
    if unknown:
        choices = ", ".join(repr(name) for name in bench.MODE_NAMES)
        raise click.BadParameter(f"{unknown[0]!r} is not one of {choices}.", param_hint="MODE")
    if "memory" in modes and memory_first_events >= memory_events:
        raise click.BadParameter(
            "must be smaller than --memory-events", param_hint="--memory-first-events"
        )
    chosen = modes or bench.DEFAULT_MODES
    # The rules mode alone times the engine: no database, so no URL is needed.
    uses_database = bench.needs_database(chosen)
    if rules_file is not None and not uses_database:
        raise click.BadParameter(
            "applies to the modes that run the workers; the rules mode times only the shipped"
            " and generated sets",
            param_hint="--rules",
        )
    rule_set = _rule_set(rules_file) if rules_file is not None else None
    url = state.database_url if uses_database else None
    statement_timeout = state.database_config.statement_timeout if uses_database else 0.0
    settings = bench.Settings(
        events=events,
        workers=workers,
        batch_size=batch_size,
        runs=runs,
        growth_rows=growth_rows,
        latency_events=latency_events,
        clients=clients,
        ingest_requests=ingest_requests,
        held_seconds=held_seconds,
        memory_events=memory_events,
        memory_first_events=memory_first_events,
        keep=keep,
        rule_set=rule_set,
        rules_file=str(rules_file) if rules_file is not None else None,
    )
    try:
        result = bench.run(
            url,
            settings,
            chosen,
            statement_timeout=statement_timeout,
            progress=lambda line: click.echo(line, err=True),
        )
    except bench.BenchError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(report.to_json(result), indent=2) if as_json else report.render(result))
    if not result.ok:
        sys.exit(1)


def _rule_set(file: pathlib.Path) -> rules.RuleSet:
    """``--rules``' file compiled and its tests run, as ``eventflo rules apply`` would; else a
    usage error naming each problem with its line."""
    from eventflo import rules

    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise click.BadParameter(f"cannot read {file}: {exc}", param_hint="--rules") from None
    try:
        return rules.load(text)
    except rules.RuleFileError as exc:
        problems = "; ".join(str(problem) for problem in exc.problems)
        raise click.BadParameter(f"{file}: {problems}", param_hint="--rules") from None
