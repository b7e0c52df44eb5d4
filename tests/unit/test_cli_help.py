"""Every ``--help`` of the ``eventflo`` command renders and points only at docs that exist."""

from __future__ import annotations

import pathlib
import re
from collections.abc import Iterator

import click
from click.testing import CliRunner

from eventflo import cli

ROOT = pathlib.Path(__file__).resolve().parents[2]

# A README section is named in quotes after the word README: (see the README, "CLI").
README_SECTION = re.compile(r'README[^"\n]{0,40}"([^"]+)"')
DOCS_PAGE = re.compile(r"\bdocs/[\w./-]+\.md\b")


def _commands(command: click.Command, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from _commands(sub, (*path, name))


def _help(path: tuple[str, ...]) -> str:
    result = CliRunner().invoke(cli.main, [*path, "--help"], env={"EVENTFLO_BATCH_SIZE": "bad"})
    assert result.exit_code == 0, (path, result.output)
    # click wraps at the terminal width: one line per paragraph, so no reference is split.
    return " ".join(result.output.split())


def _readme_headings() -> set[str]:
    headings, fenced = set(), False
    for line in (ROOT / "README.md").read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (match := re.match(r"#{1,6}\s+(.*\S)", line)):
            headings.add(match[1])
    return headings


ALL_HELP = {path: _help(path) for path in _commands(cli.main)}


def test_every_command_and_group_has_help():
    names = {" ".join(path) for path in ALL_HELP}
    for expected in ("", "dev", "keys", "keys create", "bench", "purge", "replay", "stats"):
        assert expected in names
    for path, text in ALL_HELP.items():
        assert "Usage: " in text and "--help" in text, path


def test_help_names_only_readme_sections_that_exist():
    headings = _readme_headings()
    for path, text in ALL_HELP.items():
        mentions = text.count("README")
        sections = README_SECTION.findall(text)
        assert len(sections) == mentions, f"`eventflo {' '.join(path)} --help` names no section"
        for section in sections:
            assert section in headings, f"{' '.join(path)}: no README section {section!r}"


def test_help_names_only_docs_pages_that_exist():
    referenced = set()
    for path, text in ALL_HELP.items():
        for page in DOCS_PAGE.findall(text):
            referenced.add(page)
            assert (ROOT / page).is_file(), f"`eventflo {' '.join(path)} --help` names {page}"
    assert referenced, "the help points at the docs somewhere"


def test_help_says_that_the_api_asks_for_keys():
    text = ALL_HELP[("keys",)]
    assert "does not ask for keys" not in text
    assert "EVENTFLO_AUTH on (the default)" in text
