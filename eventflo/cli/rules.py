"""``eventflo rules``: check rule files, try events on them, and store, activate and read versions.

``check`` and ``test`` need no database. ``apply``, ``list``, ``show``,
``diff`` and ``rollback`` work on the versions stored in PostgreSQL
(eventflo/ruleversions.py). Every command reads a file the way the engine
will (rules.load), so a file that passes here is one the workers can use.
"""

from __future__ import annotations

import difflib
import json
import pathlib
from typing import Any, NoReturn

import click

from eventflo import backtest, db, rules, ruleversions
from eventflo.cli.context import CliState, pass_state
from eventflo.rules.yamlfile import MAX_FILE_BYTES

MAX_MESSAGE_CHARS = 1000  # the column's CHECK


@click.group("rules")
def rules_group() -> None:
    """Rule files (YAML with CEL conditions): check, try, apply, list, show, diff, roll back.

    The format is in docs/rules.md ("Writing rules"). The shipped rules are
    the file eventflo/rules/default.yaml of the package, stored as version 1.
    The workflow: `rules show > mine.yaml`, edit, `rules check mine.yaml`,
    `rules apply mine.yaml --dry-run` (a backtest on stored events),
    `rules apply mine.yaml`, and `rules rollback N` to go back.
    """


@rules_group.command("check")
@click.argument("file", type=click.Path(dir_okay=False, path_type=pathlib.Path))
def check_command(file: pathlib.Path) -> None:
    """Validate FILE and run its tests: exit 0 when usable, else each problem with its line."""
    ruleset = _load(file, run_tests=True)
    click.echo(f"{file}: valid: {len(ruleset.rules)} rules, {len(ruleset.tests)} tests passed")


@rules_group.command("test")
@click.argument("file", type=click.Path(dir_okay=False, path_type=pathlib.Path))
@click.option(
    "--event",
    "event_text",
    required=True,
    metavar="JSON",
    help='The event, as JSON ({"event_type": ..., "source": ..., "payload": {...}})'
    " or @FILE to read it from a file.",
)
def test_command(file: pathlib.Path, event_text: str) -> None:
    """Judge one event with FILE: the verdict, and why each earlier rule did not match.

    The file's own tests are not run here (use `rules check`), so a draft can
    be tried before they pass.
    """
    event_type, source, payload = _event(event_text)
    ruleset = _load(file, run_tests=False)
    refused = ruleset.field_errors(event_type, payload)
    for field, message in sorted(refused.items()):
        click.echo(f"the API would refuse this event: payload.{field}: {message}", err=True)
    try:
        verdict, steps = ruleset.explain(event_type, source, payload)
    except rules.RuleError as exc:
        raise click.ClickException(f"the event cannot be judged: {exc}") from exc
    for step in steps:
        condition = f": {step.rule.condition}" if step.rule.condition else ""
        detail = condition if step.outcome == "condition false" else ""
        click.echo(f"  line {step.rule.line}: {step.rule.rule_id}: {step.outcome}{detail}")
    escalate = "yes" if verdict.should_escalate else "no"
    click.echo(f"verdict: {verdict.severity.value}, escalate: {escalate}, rule: {verdict.rule_id}")
    click.echo(f"reason: {verdict.reason}")
    click.echo(f"recommendation: {verdict.recommendation}")
    if refused:
        raise SystemExit(1)


@rules_group.command("apply")
@click.argument("file", type=click.Path(dir_okay=False, path_type=pathlib.Path))
@click.option("--message", "-m", default="", help="Why this version: shown by `rules list`.")
@click.option(
    "--dry-run",
    is_flag=True,
    help="Store nothing: backtest FILE instead, on the newest stored events, against the"
    " active version, and print what would change.",
)
@click.option(
    "--last",
    type=click.IntRange(1, backtest.MAX_LAST),
    metavar="N",
    help=f"With --dry-run: how many of the newest stored events to judge"
    f" (default {backtest.DEFAULT_LAST:,}).",
)
@click.option("--json", "as_json", is_flag=True, help="With --dry-run: the backtest as JSON.")
@click.option("--yes", "-y", "assume_yes", is_flag=True, help="Do not ask for confirmation.")
@pass_state
def apply_command(
    state: CliState,
    file: pathlib.Path,
    message: str,
    dry_run: bool,
    last: int | None,
    as_json: bool,
    assume_yes: bool,
) -> None:
    """Validate FILE, run its tests, then store it as the next version and make it active.

    Storing and activating are one transaction: every worker judges the
    events it claims from then on with the new version. A file identical
    (same sha256 of its canonical form) to the active version stores nothing.

    With --dry-run, nothing is stored: the newest stored events (any
    status) are judged here, by the active version and by FILE, and the
    changes are counted by rule and by severity, with example event ids.
    """
    if (last is not None or as_json) and not dry_run:
        raise click.UsageError("--last and --json go with --dry-run")
    if len(message) > MAX_MESSAGE_CHARS:
        raise click.BadParameter(f"at most {MAX_MESSAGE_CHARS} characters", param_hint="--message")
    if "\x00" in message:  # PostgreSQL text cannot hold it
        raise click.BadParameter("must not contain NUL characters", param_hint="--message")
    ruleset = _load(file, run_tests=True)
    digest = ruleversions.sha256(ruleset)
    valid = f"{file}: valid: {len(ruleset.rules)} rules, {len(ruleset.tests)} tests passed"
    click.echo(valid, err=as_json)
    with state.connect("rules apply") as conn:
        active = ruleversions.active(conn)
        if dry_run:
            _dry_run(conn, active, ruleset, last or backtest.DEFAULT_LAST, as_json=as_json)
            return
        if active.sha256 == digest:
            click.echo(f"identical to the active version {active.version}; nothing stored")
            return
        if not assume_yes:
            click.confirm(
                f"Store it and make it active for every worker, in place of version"
                f" {active.version}?",
                abort=True,
            )
        done = ruleversions.apply(conn, ruleset, message=message, created_by=ruleversions.who())
    if not done.changed:  # someone applied the same rules meanwhile
        click.echo(f"identical to the active version {done.version}; nothing stored")
        return
    click.echo(f"stored version {done.version} (sha256 {digest}) and made it active")
    click.echo(f"previous version: {done.previous} (`eventflo rules rollback {done.previous}`)")


@rules_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON array, for scripts.")
@pass_state
def list_command(state: CliState, as_json: bool) -> None:
    """Every stored version, oldest first; the active one is marked."""
    with state.connect("rules list") as conn:
        versions = ruleversions.listing(conn)
    if as_json:
        listed = [
            {
                "version": v.version,
                "active": v.active,
                "sha256": v.sha256,
                "message": v.message,
                "created_by": v.created_by,
                "created_at": v.created_at.isoformat(),
            }
            for v in versions
        ]
        click.echo(json.dumps(listed, indent=2, ensure_ascii=False))
        return
    click.echo(f"{'VERSION':>7}  {'ACTIVE':6}  {'CREATED':25}  {'BY':16}  {'SHA256':12}  MESSAGE")
    for v in versions:
        created = v.created_at.isoformat(timespec="seconds")
        active = "*" if v.active else ""
        click.echo(
            f"{v.version:>7}  {active:6}  {created:25}  {v.created_by[:16]:16}"
            f"  {v.sha256[:12]}  {v.message}"
        )


@rules_group.command("show")
@click.argument("version", type=click.IntRange(min=1), required=False)
@pass_state
def show_command(state: CliState, version: int | None) -> None:
    """Print a stored version's file (the active one by default), as `rules apply` accepts it."""
    with state.connect("rules show") as conn:
        stored = ruleversions.active(conn) if version is None else _get(conn, version)
    click.echo(stored.text, nl=False)


@rules_group.command("diff")
@click.argument("a", type=click.IntRange(min=1))
@click.argument("b", type=click.IntRange(min=1))
@pass_state
def diff_command(state: CliState, a: int, b: int) -> None:
    """A unified diff of the files of stored versions A and B."""
    with state.connect("rules diff") as conn:
        old, new = _get(conn, a), _get(conn, b)
    lines = list(
        difflib.unified_diff(
            old.text.splitlines(keepends=True),
            new.text.splitlines(keepends=True),
            fromfile=f"version {a}",
            tofile=f"version {b}",
        )
    )
    if not lines:
        click.echo(f"versions {a} and {b} have the same text")
    for line in lines:
        click.echo(line if line.endswith("\n") else line + "\n", nl=False)


@rules_group.command("rollback")
@click.argument("version", type=click.IntRange(min=1))
@pass_state
def rollback_command(state: CliState, version: int) -> None:
    """Make the stored VERSION active again, for every worker at once."""
    with state.connect("rules rollback") as conn:
        stored = _get(conn, version)
        try:
            rules.load(stored.text, run_tests=False)
        except rules.RuleFileError as exc:
            raise click.ClickException(
                f"version {version} cannot be loaded by this release ({exc.problems[0]});"
                " nothing changed"
            ) from None
        try:
            done = ruleversions.rollback(conn, version, activated_by=ruleversions.who())
        except ruleversions.UnknownVersion as exc:
            raise click.ClickException(f"{exc}; nothing changed") from None
    if not done.changed:
        click.echo(f"version {version} is already active; nothing changed")
        return
    click.echo(f"version {version} is active again (was version {done.previous})")


def _dry_run(
    conn: db.Connection,
    active: ruleversions.Version,
    ruleset: rules.RuleSet,
    last: int,
    *,
    as_json: bool,
) -> None:
    """The backtest of ``rules apply --dry-run``: what would change, on stored events."""
    try:
        active_set = rules.load(active.text, run_tests=False)
    except rules.RuleFileError as exc:
        raise click.ClickException(
            f"the active version {active.version} cannot be loaded by this release"
            f" ({exc.problems[0]}), so there is nothing to compare with"
        ) from None
    summary = backtest.backtest(conn, active_set, ruleset, last=last)
    identical = active.sha256 == ruleversions.sha256(ruleset)
    if as_json:
        document = {
            "active_version": active.version,
            "identical": identical,
            "last": last,
            **summary.as_dict(),
        }
        click.echo(json.dumps(document, indent=2, ensure_ascii=False))
        return
    _print_backtest(summary, active.version, last)
    if identical:
        click.echo(f"identical to the active version {active.version}; nothing stored")
    else:
        click.echo(
            f"dry run: would store it as a new version and make it active in place of"
            f" version {active.version}; nothing stored"
        )


def _print_backtest(summary: backtest.Summary, active_version: int, last: int) -> None:
    report = summary.as_dict()
    click.echo(
        f"backtest: judged the {summary.judged:,} newest stored events (--last {last:,})"
        f" with active version {active_version} and with this file"
    )
    click.echo(f"  changed: {summary.changed:,} of {summary.judged:,}")
    for title, key in (("by rule", "rule_changes"), ("by severity", "severity_changes")):
        if report[key]:
            click.echo(f"  {title}:")
        for change in report[key]:
            before, after = change["from"] or "(fails)", change["to"] or "(fails)"
            click.echo(f"    {before} -> {after}: {change['count']:,}")
            click.echo(f"      e.g. {', '.join(change['examples'])}")
    click.echo(f"  would fail with this file: {summary.failing_draft:,}")
    for failure in report["draft_failures"]:
        click.echo(f"    {failure['count']:,}: {failure['error']}")  # the error names the rule
        click.echo(f"      e.g. {', '.join(failure['examples'])}")
    if summary.failing_active:
        click.echo(f"  fail with the active version: {summary.failing_active:,}")


def _get(conn: db.Connection, version: int) -> ruleversions.Version:
    """A stored version, or a one-line error naming the versions there are."""
    try:
        return ruleversions.get(conn, version)
    except ruleversions.UnknownVersion as exc:
        raise click.ClickException(f"{exc} (see `eventflo rules list`)") from None


def _load(file: pathlib.Path, *, run_tests: bool) -> rules.RuleSet:
    """The rule set in ``file``, or each problem printed with its line and exit status 1."""
    try:
        with file.open("rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise click.ClickException(f"cannot read {file}: {exc.strerror}") from exc
    if len(data) > MAX_FILE_BYTES:
        _refuse(
            file, [f"line 1: the file is over {MAX_FILE_BYTES} bytes, the limit of a rule file"]
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        _refuse(file, ["line 1: the file is not UTF-8 text"])
    try:
        return rules.load(text, run_tests=run_tests)
    except rules.RuleFileError as exc:
        _refuse(file, [str(problem) for problem in exc.problems])


def _refuse(file: pathlib.Path, problems: list[str]) -> NoReturn:
    for problem in problems:
        click.echo(problem)
    count = f"{len(problems)} problem" + ("s" if len(problems) != 1 else "")
    click.echo(f"{file}: {count}; the file is not usable", err=True)
    raise SystemExit(1)


def _event(text: str) -> tuple[str, str | None, dict[str, Any]]:
    """``--event``'s event_type, source and payload, or a one-line usage error."""
    if text.startswith("@"):
        try:
            text = pathlib.Path(text[1:]).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise click.BadParameter(
                f"cannot read {text[1:]}: {exc}", param_hint="--event"
            ) from exc
    try:
        event = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint="--event") from exc
    if not isinstance(event, dict) or not isinstance(event.get("event_type"), str):
        raise click.BadParameter(
            'must be a JSON object with an "event_type" string', param_hint="--event"
        )
    unknown = set(event) - {"event_type", "source", "payload"}
    if unknown:
        raise click.BadParameter(
            f"unknown keys {', '.join(sorted(unknown))} (event_type, source, payload)",
            param_hint="--event",
        )
    source, payload = event.get("source"), event.get("payload", {})
    if not isinstance(source, str | None) or not isinstance(payload, dict):
        raise click.BadParameter(
            "source must be a string and payload an object", param_hint="--event"
        )
    return event["event_type"], source, payload
