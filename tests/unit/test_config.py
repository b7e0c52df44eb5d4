"""Settings: defaults, parsing, clear errors, and a configuration page that lists every variable."""

from __future__ import annotations

import dataclasses
import pathlib

import pytest

from eventflo.config import Config, ConfigError

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_defaults_need_nothing_but_the_database_url():
    config = Config.from_env({})
    assert config.database_url is None
    assert (config.batch_size, config.max_attempts, config.log_format) == (100, 5, "text")


def test_values_are_parsed_from_prefixed_variables():
    config = Config.from_env(
        {
            "EVENTFLO_DATABASE_URL": "postgresql://u@h:5432/db",
            "EVENTFLO_BATCH_SIZE": "250",
            "EVENTFLO_LEASE_SECONDS": "12.5",
            "EVENTFLO_LOG_FORMAT": "JSON",
            "EVENTFLO_POOL_SIZE": "  ",  # blank means unset
        }
    )
    assert config.database_url == "postgresql://u@h:5432/db"
    assert (config.batch_size, config.lease_seconds, config.log_format) == (250, 12.5, "json")
    assert config.pool_size == 10


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("EVENTFLO_BATCH_SIZE", "abc", "EVENTFLO_BATCH_SIZE='abc' is invalid"),
        ("EVENTFLO_BATCH_SIZE", "0", "must be at least 1"),
        ("EVENTFLO_LEASE_SECONDS", "-1", "must be a number of seconds from 1 to 86400"),
        ("EVENTFLO_LEASE_SECONDS", "inf", "must be a number of seconds"),
        ("EVENTFLO_LEASE_SECONDS", "1e300", "must be a number of seconds"),
        ("EVENTFLO_POLL_INTERVAL", "nan", "must be a number of seconds"),
        ("EVENTFLO_STATEMENT_TIMEOUT", "0.0001", "must be a number of seconds from 0.001"),
        ("EVENTFLO_RETRY_MAX_SECONDS", "1e9", "must be a number of seconds"),
        ("EVENTFLO_DATABASE_URL", "mysql://x", "must be a postgresql:// URL"),
        ("EVENTFLO_LOG_FORMAT", "xml", "must be one of text, json"),
    ],
)
def test_a_bad_value_is_a_clear_error_naming_the_variable(name, value, message):
    with pytest.raises(ConfigError, match=message):
        Config.from_env({name: value})


def test_missing_database_url_says_how_to_set_it():
    with pytest.raises(ConfigError, match="EVENTFLO_DATABASE_URL is not set"):
        Config.from_env({}).require_database_url()


@pytest.mark.parametrize("page", ["README.md", "docs/configuration.md"])
def test_the_configuration_tables_list_every_variable(page):
    text = (ROOT / page).read_text(encoding="utf-8")
    for field in dataclasses.fields(Config):
        assert f"| `EVENTFLO_{field.name.upper()}` |" in text, field.name
