"""Reads a rule file's YAML safely, keeping the line of every mapping and value.

Anchors and aliases are refused as the parser meets them (a first pass over
the parser's events, before any node is built), so a "billion laughs" file
fails on its first anchor instead of expanding; so is a file over
``MAX_FILE_BYTES``, before any parsing.

The parser is libyaml's where PyYAML has it (its wheels do): a worker compiles
each new active version as its first claim after the activation waits, and
the pure-Python parser took 0.3 s of that for a 200-rule file, libyaml 0.03 s.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.nodes import MappingNode

from eventflo.rules.model import Problem, RuleFileError

MAX_FILE_BYTES = 1024 * 1024


class Located(dict[Any, Any]):
    """A YAML mapping that remembers its own line and the line of each key's value."""

    line: int
    lines: dict[Any, int]

    def line_of(self, key: Any) -> int:
        """The line of ``key``'s value, or of the mapping itself when the key is absent."""
        return self.lines.get(key, self.line)


# libyaml's parser with PyYAML's safe constructors; the pure-Python one without libyaml.
try:
    from yaml import CSafeLoader as _SafeLoader
except ImportError:  # a PyYAML built without libyaml
    from yaml import SafeLoader as _SafeLoader  # type: ignore[assignment]  # same interface


class _LineLoader(_SafeLoader):
    """PyYAML's safe loader plus line numbers on mappings (anchors are refused before it runs)."""

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        plain = super().construct_mapping(node, deep=True)
        located = Located(plain)
        located.line = node.start_mark.line + 1
        located.lines = {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in located.lines:
                raise yaml.MarkedYAMLError(
                    problem=f"the key {key!r} appears twice", problem_mark=key_node.start_mark
                )
            located.lines[key] = value_node.start_mark.line + 1
        return located


def _construct_located(loader: _LineLoader, node: MappingNode) -> Located:
    located = loader.construct_mapping(node)
    assert isinstance(located, Located)
    return located


_LineLoader.add_constructor("tag:yaml.org,2002:map", _construct_located)


def read(text: str) -> Any:
    """The document in ``text``; RuleFileError naming the line when it is not usable YAML."""
    size = len(text.encode("utf-8", errors="surrogatepass"))
    if size > MAX_FILE_BYTES:
        raise RuleFileError(
            [Problem(1, f"the file is {size} bytes; a rule file may be at most {MAX_FILE_BYTES}")]
        )
    try:
        _refuse_anchors(text)
        return yaml.load(text, Loader=_LineLoader)  # noqa: S506  # a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        raise RuleFileError([Problem(line, f"invalid YAML: {exc.problem}")]) from exc
    except yaml.YAMLError as exc:
        raise RuleFileError([Problem(1, f"invalid YAML: {exc}")]) from exc


def _refuse_anchors(text: str) -> None:
    """RuleFileError at the first anchor or alias: nothing is composed, so nothing expands."""
    for event in yaml.parse(text, Loader=_SafeLoader):
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            line = event.start_mark.line + 1 if event.start_mark is not None else 1
            raise RuleFileError(
                [
                    Problem(
                        line,
                        "invalid YAML: YAML anchors and aliases are not allowed in a rule file",
                    )
                ]
            )
