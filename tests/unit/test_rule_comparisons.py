"""Which equality tests the reader can see: the plain forms only, never text inside a literal."""

from __future__ import annotations

import pytest

from eventflo.rules.comparisons import Operand, comparisons


def field(name: str) -> Operand:
    return Operand(field=name)


@pytest.mark.parametrize(
    ("condition", "found"),
    [
        ('payload.a == "x"', [(field("a"), "==", (Operand(kind="string", text='"x"'),))]),
        ("1.5 != payload.a.b", [(Operand(kind="number", text="1.5"), "!=", (field("a.b"),))]),
        ("payload['a'] == -2", [(field("a"), "==", (Operand(kind="number", text="-2"),))]),
        (
            "x && payload.a in [true, null]",
            [
                (
                    field("a"),
                    "in",
                    (Operand(kind="boolean", text="true"), Operand(kind="null", text="null")),
                )
            ],
        ),
        ("payload.a == payload.b", [(field("a"), "==", (field("b"),))]),
        ("(payload.a == b'x')", [(field("a"), "==", (Operand(kind="bytes", text="b'x'"),))]),
    ],
)
def test_plain_comparisons_are_found(condition, found):
    assert [(c.left, c.operator, c.right) for c in comparisons(condition)] == found


@pytest.mark.parametrize(
    "condition",
    [
        "payload.a.size() == 3",  # a call's result, not the field
        "payload.a + 1 == 2",  # arithmetic binds tighter than ==
        "1 == payload.a * 2",
        "x < payload.a == true",  # (x < payload.a) == true
        '"payload.a == 1"',  # inside a string literal
        "payload.a in [1, payload.b]",  # a list that is not all literals
        "payload.a in other",
    ],
)
def test_operands_inside_larger_expressions_and_literals_are_not_read(condition):
    assert comparisons(condition) == []


def test_a_comparison_in_a_comment_is_not_read():
    found = comparisons("payload.h == 'x' // payload.h == 1")
    assert [(c.left, c.right) for c in found] == [
        (field("h"), (Operand(kind="string", text="'x'"),))
    ]
