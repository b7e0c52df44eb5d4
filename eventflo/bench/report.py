"""A bench report as an aligned table for people, or as JSON for scripts.

The JSON document::

    {
      "ok": true,                      # false when any mode failed its check
      "settings": {"modes": [...], "events": N, "workers": W, "batch_size": B,
                   "runs": R, "growth_rows": M or null, "latency_events": N or null,
                   "clients": C or null, "ingest_requests": N or null,
                   "rules_file": "FILE" or null},   # --rules: the workers judged with it
      "environment": {"server_version": "...", "fsync": "on", "synchronous_commit": "on",
                      "payload_bytes": 52, "cpu_count": 2,
                      "scratch_database": "...", "kept": false,
                      "checkpoint_before_runs": true},
                     # server_version, fsync, synchronous_commit, payload_bytes and
                     # scratch_database are null when no mode asked for needs the
                     # database (``eventflo bench rules`` alone)
      "modes": {"drain": {"error": null,
                          "figures": {"events_per_s": {"label": "...", "unit": "events/s",
                                                       "median": ..., "min": ..., "max": ...,
                                                       "runs": [...]}, ...}},
                ...},
      "ratios": {"drain_vs_floor": {"label": "...", "value": 0.8,
                                    "target": null, "passed": null}, ...}
    }

A ratio with a target (the rules-drain mode's: 0.9 and 0.8) passes when its
value reaches it; ``passed`` is null for a ratio without one.
"""

from __future__ import annotations

from typing import Any

from eventflo.bench import Environment, Figure, Report


def to_json(report: Report) -> dict[str, Any]:
    settings = report.settings
    environment = report.environment
    return {
        "ok": report.ok,
        "settings": {
            "modes": list(report.modes),
            "events": settings.events,
            "workers": settings.workers,
            "batch_size": settings.batch_size,
            "runs": settings.runs,
            "growth_rows": settings.growth_rows if "growth" in report.modes else None,
            "latency_events": settings.latency_events if "latency" in report.modes else None,
            "clients": settings.clients if "ingest" in report.modes else None,
            "ingest_requests": settings.ingest_requests if "ingest" in report.modes else None,
            "rules_file": settings.rules_file,
        },
        "environment": {
            "server_version": environment.server_version,
            "fsync": environment.fsync,
            "synchronous_commit": environment.synchronous_commit,
            "payload_bytes": environment.payload_bytes,
            "cpu_count": environment.cpu_count,
            "scratch_database": environment.scratch_database,
            "kept": environment.kept,
            "checkpoint_before_runs": environment.checkpoint_before_runs,
        },
        "modes": {
            result.mode: {
                "error": result.error,
                "figures": {figure.key: _figure_json(figure) for figure in result.figures},
            }
            for result in report.results
        },
        "ratios": {
            ratio.key: {
                "label": ratio.label,
                "value": ratio.value,
                "target": ratio.target,
                "passed": ratio.passed,
            }
            for ratio in report.ratios
        },
    }


def _figure_json(figure: Figure) -> dict[str, Any]:
    return {
        "label": figure.label,
        "unit": figure.unit,
        "median": figure.median,
        "min": figure.low,
        "max": figure.high,
        "runs": list(figure.values),
    }


def _number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}"


def _server_line(environment: Environment) -> str:
    if environment.server_version is None:
        return "server    none (no mode asked for needs the database)"
    return (
        f"server    PostgreSQL {environment.server_version} · fsync={environment.fsync}"
        f" · synchronous_commit={environment.synchronous_commit}"
        + (
            " · CHECKPOINT before each timed drain"
            if environment.checkpoint_before_runs
            else " · no CHECKPOINT before runs (role lacks pg_checkpoint)"
        )
    )


def render(report: Report) -> str:
    """The report as a table: settings first, then one line per figure, then the ratios."""
    settings, environment = report.settings, report.environment
    runs = "1 run" if settings.runs == 1 else f"medians of {settings.runs} runs (min – max)"
    if environment.server_version is None:
        what = [f"{settings.events:,} classifications per rule set"]
    else:
        what = [
            f"{settings.events:,} events",
            f"{settings.workers} worker process{'es' if settings.workers != 1 else ''}",
            f"batch size {settings.batch_size}",
            f"payload {environment.payload_bytes} bytes (JSON, mean)",
        ]
    if settings.rules_file is not None:
        what.append(f"rules {settings.rules_file}")
    if "growth" in report.modes:
        what.append(f"growth rows {settings.growth_rows:,}")
    if "latency" in report.modes:
        what.append(f"latency events {settings.latency_events:,}")
    if "ingest" in report.modes:
        what.append(
            f"ingest {settings.ingest_requests:,} requests from {settings.clients} client"
            f"{'s' if settings.clients != 1 else ''}"
        )
    lines = [
        f"eventflo bench: {runs}",
        "settings  " + " · ".join(what),
        _server_line(environment),
        f"client    {environment.cpu_count or '?'} CPUs",
        "",
    ]
    rows: list[tuple[str, str, str, str, str]] = [("mode", "figure", "median", "min – max", "unit")]
    errors: list[str] = []
    for result in report.results:
        if result.error is not None:
            errors.append(f"{result.mode}: ERROR: {result.error}")
            rows.append((result.mode, "ERROR (see below)", "-", "-", ""))
            continue
        for figure in result.figures:
            spread = f"{_number(figure.low)} – {_number(figure.high)}"
            rows.append((result.mode, figure.label, _number(figure.median), spread, figure.unit))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for row in rows:
        lines.append(
            f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:>{widths[2]}}"
            f"  {row[3]:>{widths[3]}}  {row[4]}".rstrip()
        )
    if report.ratios:
        lines.append("")
        width = max(len(ratio.label) for ratio in report.ratios)
        for ratio in report.ratios:
            verdict = ""
            if ratio.target is not None:
                verdict = f"  {'pass' if ratio.passed else 'FAIL'} (target ≥ {ratio.target:.0%})"
            lines.append(f"{ratio.label:<{width}}  {ratio.value:.2f}  ({ratio.value:.0%}){verdict}")
    if errors:
        lines.append("")
        lines.extend(errors)
    return "\n".join(lines)
