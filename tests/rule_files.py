"""A small rule file the tests share: disk_full with a required, a defaulted and a boolean field."""

from __future__ import annotations

DISK_RULES = """\
fields:
  disk_full:
    percent: {type: number}
    host: {type: string, default: unknown}
    mounted: {type: boolean, default: true}
rules:
  - id: disk_full.critical
    event_type: disk_full
    when: payload.percent >= 90
    severity: CRITICAL
    escalate: true
    reason: "Disk on {{payload.host}} is {{payload.percent}}% full"
    recommendation: "Free space on {{payload.host}}"
  - id: default
    severity: LOW
    reason: "No specific rule for this event type"
    recommendation: "No action needed; keep for the record"
"""
