"""``eventflo rules``: check a rule file and try events on it, with no database.

Both commands read the file the way the engine will (rules.load), so a file
that passes here is one the workers can use.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any, NoReturn

import click

from eventflo import rules
from eventflo.rules.yamlfile import MAX_FILE_BYTES


@click.group("rules")
def rules_group() -> None:
    """Rule files (YAML with CEL conditions): check them and try events on them.

    The format is in docs/rules.md ("Writing rules"). The shipped rules are
    the file eventflo/rules/default.yaml of the package.
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
