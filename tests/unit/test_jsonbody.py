"""Strict JSON: what jsonb cannot store is refused at the edge with the right status."""

from __future__ import annotations

import pytest

from eventflo import jsonbody
from eventflo.errors import InvalidEvent, MalformedRequest


def test_ordinary_json_parses():
    assert jsonbody.loads(b'{"a": [1, 2.5, "x", null, true]}', max_depth=8) == {
        "a": [1, 2.5, "x", None, True]
    }


@pytest.mark.parametrize(
    "body",
    [
        b"{",
        b"",
        b'{"a": NaN}',
        b'{"a": Infinity}',
        b'{"a": -Infinity}',
        b'{"a": 1e400}',
        b"\xff\xfe{}",
    ],
)
def test_malformed_or_non_standard_json_is_a_400(body):
    with pytest.raises(MalformedRequest):
        jsonbody.loads(body, max_depth=8)


@pytest.mark.parametrize(
    "body",
    [
        b'{"a": "x\\u0000y"}',
        b'{"a\\u0000": 1}',
        b'{"a": ["\\ud800"]}',
        b'{"a": "\\udfff"}',
    ],
)
def test_text_postgres_cannot_store_is_a_422(body):
    with pytest.raises(InvalidEvent):
        jsonbody.loads(body, max_depth=8)


def test_a_valid_surrogate_pair_is_fine():
    assert jsonbody.loads(b'{"a": "\\ud83d\\ude00"}', max_depth=8) == {"a": "\U0001f600"}


def test_depth_is_capped_and_deep_nesting_never_raises_recursion_error():
    assert jsonbody.loads(b'{"a": {"b": {}}}', max_depth=3)
    with pytest.raises(InvalidEvent, match="deeper than 2"):
        jsonbody.loads(b'{"a": {"b": {}}}', max_depth=2)
    deep = b"[" * 5000 + b"]" * 5000
    with pytest.raises(InvalidEvent):
        jsonbody.loads(deep, max_depth=32)


def test_object_keys_are_counted_at_every_depth_up_to_the_limit():
    body = b'{"a": {"b": 1, "c": [{"d": 1}, {"e": 2}]}}'  # five keys
    assert jsonbody.loads(body, max_depth=8, max_keys=5)
    with pytest.raises(InvalidEvent, match="The body has more than 4 object keys"):
        jsonbody.loads(body, max_depth=8, max_keys=4)


def test_without_a_key_limit_any_number_of_keys_parses():
    body = ("{" + ", ".join(f'"k{i}": {i}' for i in range(5000)) + "}").encode()
    assert len(jsonbody.loads(body, max_depth=8)) == 5000


def test_each_item_of_the_named_array_is_counted_on_its_own():
    item = '{"event_type": "x", "payload": {"a": 1, "b": 2}}'  # four keys
    batch = ('{"events": [' + ", ".join([item] * 100) + "]}").encode()
    parsed = jsonbody.loads(batch, max_depth=8, max_keys=4, per_event_in="events")
    assert len(parsed["events"]) == 100
    fifth_key = b'{"event_type": "x", "payload": {"a": {"b": 1, "c": 2}}}'
    over = b'{"events": [' + item.encode() + b", " + fifth_key + b"]}"
    with pytest.raises(InvalidEvent, match=r"The event at events\.1 has more than 4"):
        jsonbody.loads(over, max_depth=8, max_keys=4, per_event_in="events")


def test_a_batch_without_its_array_is_counted_as_one_document():
    with pytest.raises(InvalidEvent, match="The body has more than 2"):
        jsonbody.loads(b'{"a": 1, "b": 2, "c": 3}', max_depth=8, max_keys=2, per_event_in="events")


@pytest.mark.parametrize(
    ("body", "key"),
    [
        (b'{"event_type": "x", "event_type": "y"}', "event_type"),
        (b'{"payload": {"a": {"amount": 1, "amount": 2}}}', "amount"),
        (b'{"events": [{"a": 1}, {"b": 1, "b": 1}]}', "b"),
    ],
)
def test_a_key_twice_in_one_object_is_a_400_that_names_it(body, key):
    with pytest.raises(MalformedRequest, match=f"The key '{key}' appears twice"):
        jsonbody.loads(body, max_depth=8)


def test_equal_keys_in_different_objects_are_fine():
    document = jsonbody.loads(b'{"a": {"a": 1}, "b": [{"a": 2}, {"a": 3}]}', max_depth=8)
    assert document == {"a": {"a": 1}, "b": [{"a": 2}, {"a": 3}]}


@pytest.mark.parametrize("document", [[], [{}], None, "x", 5, True])
def test_a_body_that_is_not_an_object_is_refused_in_words(document):
    with pytest.raises(InvalidEvent, match="^The body must be a JSON object.$"):
        jsonbody.require_objects(document)


def test_a_batch_item_that_is_not_an_object_is_named_by_its_index():
    with pytest.raises(InvalidEvent, match="Item 2 of events") as refused:
        jsonbody.require_objects({"events": [{}, {}, [1], None]}, items_in="events")
    assert refused.value.field_errors == {"events": {2: ["Must be a JSON object."]}}
    jsonbody.require_objects({"events": [{}, {}]}, items_in="events")  # objects: no complaint
