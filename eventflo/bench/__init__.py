"""``eventflo bench``: throughput measured on a scratch database, never on the user's data.

The orchestration lives here: the scratch database (created next to the
configured one, migrated, dropped at the end, also on Ctrl-C or SIGTERM), the
``Bench`` context a mode runs in, repeated runs and their medians, and the
ratios between modes. Each mode is one module of this package with a
``SUMMARY`` line and ``run(bench) -> ModeResult``; registering a new one is a
line in ``MODES``. A mode that sets ``NEEDS_DATABASE = False`` (the rules
mode: the engine alone) runs without one when only such modes are asked for.

The workers judge with the scratch database's active rule version, as they
would anywhere: ``--rules FILE`` and the rules-drain mode store and activate
their rule sets there through eventflo.ruleversions, the product's own path.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import os
import secrets
import statistics
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol, cast

import psycopg
from psycopg import sql as pgsql
from psycopg.rows import dict_row

from eventflo import keys, migrate, rules, ruleversions, signals, sql

# The bench's own queries, kept beside it: nothing in the product runs them.
QUERIES = sql.load("queries.sql", package=__name__)

# Mode name -> the module that implements it, in the order a report lists them.
MODES: Mapping[str, str] = {
    "drain": "eventflo.bench.drain",
    "floor": "eventflo.bench.floor",
    "growth": "eventflo.bench.growth",
    "latency": "eventflo.bench.latency",
    "ingest": "eventflo.bench.ingest",
    "held-xmin": "eventflo.bench.held_xmin",
    "memory": "eventflo.bench.memory",
    "rules": "eventflo.bench.rule_speed",
    "rules-drain": "eventflo.bench.rules_drain",
    "outbox-drain": "eventflo.bench.outbox_drain",
    "deliver": "eventflo.bench.deliver",
}
MODE_NAMES = tuple(MODES)
DEFAULT_MODES = ("drain", "floor")

# Who the scratch database's rule versions say stored and activated them.
BENCH_USER = "eventflo bench"

# How often the bench looks at the database while something runs (the queue, the gate).
POLL_SECONDS = 0.05

Connection = psycopg.Connection[dict[str, Any]]
Sample = dict[str, float]
Progress = Callable[[str], None]


class BenchError(Exception):
    """The bench cannot run, or a run failed its own check: the user gets a message, no number."""


@dataclasses.dataclass(frozen=True)
class Settings:
    """What the user asked for; every report repeats it, because the figures depend on it."""

    events: int = 100_000
    workers: int = 4
    batch_size: int = 100
    runs: int = 3
    growth_rows: int = 1_000_000
    latency_events: int = 1000
    clients: int = 8
    ingest_requests: int = 5000
    held_seconds: float = 120.0
    memory_events: int = 200_000
    memory_first_events: int = 10_000
    keep: bool = False
    # --rules FILE: the workers of every mode judge with this set (None: the shipped one).
    rule_set: rules.RuleSet | None = None
    rules_file: str | None = None


@dataclasses.dataclass(frozen=True)
class Figure:
    """One measured quantity over all runs; the median is the figure, min and max its spread."""

    key: str
    label: str
    unit: str
    values: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def low(self) -> float:
        return min(self.values)

    @property
    def high(self) -> float:
        return max(self.values)


@dataclasses.dataclass(frozen=True)
class Ratio:
    """A quotient of two medians, e.g. EventFlo's drain rate over the floor's.

    A ratio with a ``target`` is a goal: it passes when ``value >= target``.
    """

    key: str
    label: str
    value: float
    target: float | None = None

    @property
    def passed(self) -> bool | None:
        return None if self.target is None else self.value >= self.target


@dataclasses.dataclass(frozen=True)
class ModeResult:
    """What one mode measured, or why it has no figures (``error``)."""

    mode: str
    figures: tuple[Figure, ...] = ()
    ratios: tuple[Ratio, ...] = ()
    error: str | None = None

    def figure(self, key: str) -> Figure | None:
        return next((f for f in self.figures if f.key == key), None)


@dataclasses.dataclass(frozen=True)
class Environment:
    """The facts of the machine and server that produced the figures (no server: None)."""

    server_version: str | None
    fsync: str | None
    synchronous_commit: str | None
    payload_bytes: int | None
    cpu_count: int | None
    scratch_database: str | None
    kept: bool
    # Whether each timed drain (drain, floor, growth, held-xmin) starts right
    # after a CHECKPOINT (Bench.checkpoint).
    checkpoint_before_runs: bool


@dataclasses.dataclass(frozen=True)
class Report:
    settings: Settings
    modes: tuple[str, ...]
    environment: Environment
    results: tuple[ModeResult, ...]
    ratios: tuple[Ratio, ...]

    @property
    def ok(self) -> bool:
        return all(result.error is None for result in self.results)


class Mode(Protocol):
    """The interface of a mode module."""

    SUMMARY: str

    def run(self, bench: Bench) -> ModeResult: ...


@dataclasses.dataclass(frozen=True)
class Comparison:
    """A ratio between two modes' figures, reported when both modes ran."""

    key: str
    label: str
    numerator: tuple[str, str]
    denominator: tuple[str, str]


COMPARISONS = (
    Comparison(
        "drain_vs_floor",
        "EventFlo drain / floor (events/s)",
        ("drain", "events_per_s"),
        ("floor", "events_per_s"),
    ),
    Comparison(
        "ingest_without_vs_with_notify",
        "ingest without NOTIFY / with (requests/s)",
        ("ingest", "requests_per_s_no_notify"),
        ("ingest", "requests_per_s"),
    ),
    Comparison(
        "ingest_vs_bare",
        "EventFlo POST /events / bare insert endpoint (requests/s)",
        ("ingest", "requests_per_s"),
        ("ingest", "bare_requests_per_s"),
    ),
)


def mode(name: str) -> Mode:
    """The module of a registered mode, imported on first use."""
    return cast(Mode, importlib.import_module(MODES[name]))


def needs_database(modes: Sequence[str]) -> bool:
    """Whether any of ``modes`` runs against PostgreSQL (all but the engine-only ones do)."""
    return any(getattr(mode(name), "NEEDS_DATABASE", True) for name in modes)


def figures(samples: Sequence[Sample], specs: Sequence[tuple[str, str, str]]) -> tuple[Figure, ...]:
    """Turn per-run samples into figures; ``specs`` are (key, label, unit) in report order."""
    return tuple(
        Figure(key, label, unit, tuple(s[key] for s in samples)) for key, label, unit in specs
    )


def rates(conn: Connection, window_query: str, *, commits: int, wall_seconds: float) -> Sample:
    """events/s and transactions/s over the window the database's own timestamps give.

    ``window_query`` names a block returning ``events`` and ``seconds`` (first
    claim to last completion), so process start-up never counts.
    """
    window = conn.execute(QUERIES[window_query]).fetchone()
    assert window is not None
    seconds = window["seconds"]
    if not seconds or seconds <= 0:
        raise BenchError("the database timestamps give no drain time")
    return {
        "events_per_s": window["events"] / seconds,
        "transactions_per_s": commits / seconds,
        "wall_s": wall_seconds,
    }


class Bench:
    """What a mode runs with: the settings, the scratch database, its statistics, progress lines."""

    def __init__(
        self,
        settings: Settings,
        *,
        admin: Connection | None,
        database: str,
        url: str,
        statement_timeout: float,
        progress: Progress,
    ) -> None:
        self.settings = settings
        self.database = database
        self.url = url
        # Real workers give up on a statement after this long, so a start gate
        # must open well before it.
        self.gate_timeout = max(1.0, 0.8 * statement_timeout)
        self.progress = progress
        self._admin = admin
        self._api_key: str | None = None
        self.may_checkpoint = False  # until _environment has asked the server

    @property
    def api_key(self) -> str:
        """An admin key of the scratch database: the API runs with auth on, as by default."""
        if self._api_key is None:
            with self.connect("setup") as conn:
                _, self._api_key = keys.create(conn, name="eventflo bench", scope="admin")
        return self._api_key

    def connect(self, purpose: str) -> Connection:
        """An autocommit connection to the scratch database, without a statement timeout."""
        if not self.url:
            raise BenchError("this run has no database: only modes that need none were asked for")
        return psycopg.connect(
            self.url,
            autocommit=True,
            row_factory=dict_row,
            application_name=f"eventflo-bench {purpose}",
        )

    def activate(self, conn: Connection, rule_set: rules.RuleSet, *, message: str) -> int:
        """Make ``rule_set`` the active version of the scratch database; returns its number.

        The product's own functions: a set stored before is made active
        again (as ``eventflo rules rollback`` does), a new one is applied (as
        ``eventflo rules apply`` does). Workers started afterwards judge with it.
        """
        stored = ruleversions.stored_version(conn, rule_set)
        if stored is None:
            return ruleversions.apply(
                conn, rule_set, message=message, created_by=BENCH_USER
            ).version
        ruleversions.rollback(conn, stored, activated_by=BENCH_USER)
        return stored

    def checkpoint(self, conn: Connection) -> None:
        """Checkpoint after a run's setup, so the run does not pay for the setup's writes.

        A setup writes up to a million rows (the growth mode's history): enough
        WAL to trigger a checkpoint, which then flushes the setup's pages in
        the middle of the timed run that follows and makes it slower by chance.
        CHECKPOINT needs superuser or the pg_checkpoint role; without either,
        the runs go on and the report says they started without one.
        """
        if self.may_checkpoint:
            conn.execute(QUERIES["checkpoint"])

    def commits(self, timeout: float = 30.0) -> int:
        """Transactions committed in the scratch database, counted once no session is attached.

        A session reports its counts when it ends (or about once a second), so
        only with every session gone is the counter complete. Read through the
        admin connection, whose own transactions count for another database.
        """
        if self._admin is None:
            raise BenchError("this run has no database")
        deadline = time.monotonic() + timeout
        while True:
            row = self._admin.execute(
                QUERIES["scratch_statistics"], {"database": self.database}
            ).fetchone()
            assert row is not None
            if row["sessions"] == 0:
                return int(row["commits"])
            if time.monotonic() > deadline:
                raise BenchError(
                    f"{row['sessions']} session(s) still attached to {self.database}"
                    f" after {timeout:g} s"
                )
            time.sleep(POLL_SECONDS)

    def repeat(self, label: str, once: Callable[[], Sample]) -> list[Sample]:
        """Run ``once`` ``settings.runs`` times, with a progress line for each run."""
        samples: list[Sample] = []
        runs = self.settings.runs
        for number in range(1, runs + 1):
            self.progress(f"{label}: run {number}/{runs}")
            try:
                sample = once()
            except BenchError as exc:
                raise BenchError(f"{label}, run {number}/{runs}: {exc}") from None
            shown = ", ".join(f"{key} {value:,.2f}" for key, value in sample.items())
            self.progress(f"{label}: run {number}/{runs}: {shown}")
            samples.append(sample)
        return samples


def scratch_url(database_url: str, name: str) -> str:
    """The configured URL with another database name (and no ``dbname`` parameter overriding it)."""
    parts = urllib.parse.urlsplit(database_url)
    query = [
        (key, value)
        for key, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        if key != "dbname"
    ]
    return urllib.parse.urlunsplit(
        parts._replace(
            path="/" + urllib.parse.quote(name, safe=""), query=urllib.parse.urlencode(query)
        )
    )


def scratch_name(configured: str) -> str:
    """``<configured>_bench_<6 hex>``, cut to fit PostgreSQL's 63-byte identifiers."""
    suffix = f"_bench_{secrets.token_hex(3)}"
    base = configured.encode()[: 63 - len(suffix)].decode(errors="ignore")
    return base + suffix


@contextlib.contextmanager
def scratch_database(
    admin: Connection, database_url: str, *, keep: bool, progress: Progress
) -> Iterator[tuple[str, str]]:
    """Create and migrate a scratch database; drop it on the way out unless ``keep``.

    Yields (name, URL). The drop also runs on KeyboardInterrupt (Ctrl-C, and
    SIGTERM while ``run`` is active), and disconnects anything left attached.
    """
    configured = admin.info.dbname
    prefix = f"{configured}_bench_"
    leftovers = [
        row["datname"]
        for row in admin.execute(
            QUERIES["leftover_databases"], {"prefix": prefix, "current": configured}
        )
    ]
    if leftovers:
        progress(
            "note: scratch databases of earlier bench runs exist (kept with --keep, or killed): "
            + ", ".join(leftovers)
        )
    name = scratch_name(configured)
    try:
        admin.execute(pgsql.SQL(QUERIES["create_database"]).format(database=pgsql.Identifier(name)))
    except psycopg.errors.InsufficientPrivilege:
        raise BenchError(
            f"the bench runs in a scratch database, and role {admin.info.user!r} may not create "
            "one; "
            f"grant it with ALTER ROLE {admin.info.user} CREATEDB, or use a role that has it"
        ) from None
    progress(f"scratch database {name} created")
    try:
        url = scratch_url(database_url, name)
        migrate.apply(url)
        yield name, url
    finally:
        if keep:
            progress(f"scratch database {name} kept (--keep); drop it with: DROP DATABASE {name}")
        else:
            admin.execute(
                pgsql.SQL(QUERIES["drop_database"]).format(database=pgsql.Identifier(name))
            )
            progress(f"scratch database {name} dropped")


def _environment(bench: Bench) -> Environment:
    with bench.connect("setup") as conn:
        conn.execute(QUERIES["create_payload_functions"])
        server = conn.execute(QUERIES["server_settings"]).fetchone()
        payload = conn.execute(QUERIES["payload_bytes"]).fetchone()
        checkpoint = conn.execute(QUERIES["may_checkpoint"]).fetchone()
        user = conn.info.user
    assert server is not None and payload is not None
    bench.may_checkpoint = bool(checkpoint and checkpoint["allowed"])
    if not bench.may_checkpoint:
        bench.progress(
            f"note: role {user!r} may not CHECKPOINT (GRANT pg_checkpoint TO {user});"
            " a checkpoint triggered by a run's setup may slow that run"
        )
    return Environment(
        server_version=server["server_version"],
        fsync=server["fsync"],
        synchronous_commit=server["synchronous_commit"],
        payload_bytes=round(payload["bytes"]),
        cpu_count=os.cpu_count(),
        scratch_database=bench.database,
        kept=bench.settings.keep,
        checkpoint_before_runs=bench.may_checkpoint,
    )


def _comparisons(results: Sequence[ModeResult]) -> tuple[Ratio, ...]:
    by_mode = {result.mode: result for result in results if result.error is None}
    ratios: list[Ratio] = []
    for comparison in COMPARISONS:
        top, bottom = (
            by_mode[m].figure(key) if m in by_mode else None
            for m, key in (comparison.numerator, comparison.denominator)
        )
        if top is not None and bottom is not None and bottom.median > 0:
            ratios.append(Ratio(comparison.key, comparison.label, top.median / bottom.median))
    return tuple(ratios)


def run(
    database_url: str | None,
    settings: Settings,
    modes: Sequence[str],
    *,
    statement_timeout: float,
    progress: Progress,
) -> Report:
    """Run ``modes`` in order on a fresh scratch database of the configured server.

    A mode whose run fails its check is reported with its error and the
    others still run; BenchError is raised only when nothing can run. When no
    mode needs the database, none is created and ``database_url`` may be None.
    """
    modes = tuple(dict.fromkeys(modes))  # once each, in the order asked
    if not needs_database(modes):
        return _run_without_database(settings, modes, progress)
    assert database_url is not None, "a mode that needs the database needs its URL"
    with (
        # SIGTERM unwinds like Ctrl-C, so the scratch database is dropped either way.
        signals.sigterm_unwinds(),
        psycopg.connect(
            database_url,
            autocommit=True,
            row_factory=dict_row,
            application_name="eventflo-bench admin",
        ) as admin,
        scratch_database(admin, database_url, keep=settings.keep, progress=progress) as (name, url),
    ):
        bench = Bench(
            settings,
            admin=admin,
            database=name,
            url=url,
            statement_timeout=statement_timeout,
            progress=progress,
        )
        environment = _environment(bench)
        if settings.rule_set is not None:
            with bench.connect("setup") as conn:
                version = bench.activate(
                    conn, settings.rule_set, message=f"eventflo bench --rules {settings.rules_file}"
                )
            progress(f"rules: {settings.rules_file} is version {version}, active")
        results = _run_modes(bench, modes)
    return _report(settings, modes, environment, results)


def _run_without_database(settings: Settings, modes: Sequence[str], progress: Progress) -> Report:
    bench = Bench(
        settings, admin=None, database="", url="", statement_timeout=0.0, progress=progress
    )
    environment = Environment(
        server_version=None,
        fsync=None,
        synchronous_commit=None,
        payload_bytes=None,
        cpu_count=os.cpu_count(),
        scratch_database=None,
        kept=False,
        checkpoint_before_runs=False,
    )
    return _report(settings, tuple(modes), environment, _run_modes(bench, modes))


def _run_modes(bench: Bench, modes: Sequence[str]) -> list[ModeResult]:
    results: list[ModeResult] = []
    for name_of_mode in modes:
        implementation = mode(name_of_mode)
        bench.progress(f"{name_of_mode}: {implementation.SUMMARY}")
        try:
            result = implementation.run(bench)
        except BenchError as exc:
            bench.progress(f"{name_of_mode}: ERROR: {exc}")
            result = ModeResult(name_of_mode, error=str(exc))
        results.append(result)
    return results


def _report(
    settings: Settings, modes: tuple[str, ...], environment: Environment, results: list[ModeResult]
) -> Report:
    ratios = tuple(r for result in results for r in result.ratios) + _comparisons(results)
    return Report(settings, modes, environment, tuple(results), ratios)
