import json
from datetime import UTC, datetime

import pytest

from realtime.limits import Limits
from realtime.protocol import (
    EVERY,
    BadFrame,
    ClientMessage,
    Watch,
    compact_json,
    encode_event,
    frame_text,
    parse_client_frame,
    parse_watch,
    redact_strings,
)

LIMITS = Limits()


def parse(text: str | None = None, data: bytes | None = None) -> ClientMessage:
    return parse_client_frame(text, data, LIMITS)


def test_a_frame_is_the_shared_body_with_version_and_sequence():
    body = encode_event("clients", {"name": "db"}, at="2026-01-01T00:00:00+00:00")
    frame = json.loads(frame_text(7, body))
    assert frame == {
        "v": 3,
        "seq": 7,
        "type": "clients",
        "at": "2026-01-01T00:00:00+00:00",
        "data": {"name": "db"},
    }


def test_frame_json_is_ascii_so_its_length_is_its_size_in_bytes():
    value = {"name": "café ☕ 🚀", "at": datetime(2026, 1, 1, tzinfo=UTC), 3: [1.5, None, True]}
    text = compact_json(value)
    assert text.isascii() and len(text) == len(text.encode())
    assert json.loads(text) == {
        "name": "café ☕ 🚀",
        "at": "2026-01-01 00:00:00+00:00",
        "3": [1.5, None, True],
    }
    assert compact_json({"name": "db", "at": value["at"]}) == json.dumps(
        {"name": "db", "at": value["at"]}, separators=(",", ":"), default=str
    )


def test_frame_json_never_carries_nan_which_json_parse_refuses():
    assert compact_json({"latency_ms": float("nan"), "max": float("inf")}) == (
        '{"latency_ms":null,"max":null}'
    )


def test_it_parses_every_client_message():
    assert parse('{"type": "ping"}') == ClientMessage("ping")
    assert parse('{"type": "ack", "seq": 12}') == ClientMessage("ack", seq=12)
    assert parse('{"type": "filter", "tags": ["DB", " api "]}') == ClientMessage(
        "filter", tags=frozenset({"db", "api"})
    )
    assert parse('{"type": "filter", "tags": []}') == ClientMessage("filter")
    assert parse('{"type": "resync"}') == ClientMessage("resync")


@pytest.mark.parametrize(
    ("text", "data", "code"),
    [
        (None, b"\x00\x01", "binary"),
        ("not json", None, "not_json"),
        ("[" * 20_000 + "]" * 20_000, None, "not_json"),  # nesting past the recursion limit
        ('{"a": ' + "1" * 5000 + "}", None, "not_json"),  # an integer too long to convert
        ("[1, 2]", None, "not_object"),
        ('"ping"', None, "not_object"),
        ("{}", None, "unknown_type"),
        ('{"type": "subscribe"}', None, "unknown_type"),
        ('{"type": ["ping"]}', None, "unknown_type"),
        ('{"type": "ack"}', None, "bad_field"),
        ('{"type": "ack", "seq": -1}', None, "bad_field"),
        ('{"type": "ack", "seq": true}', None, "bad_field"),
        ('{"type": "ack", "seq": "3"}', None, "bad_field"),
        ('{"type": "filter", "tags": "db"}', None, "bad_field"),
        ('{"type": "filter", "tags": [""]}', None, "bad_field"),
        ('{"type": "filter", "tags": [1]}', None, "bad_field"),
        ('{"type": "filter", "tags": ["x"' + ', "y"' * 20 + "]}", None, "bad_field"),
        ('{"type": "filter", "tags": ["' + "x" * 51 + '"]}', None, "bad_field"),
        ('{"type": "ping", "pad": "' + "x" * 65_536 + '"}', None, "too_large"),
        ('{"type": "ping", "pad": "' + "é" * 33_000 + '"}', None, "too_large"),  # bytes count
    ],
)
def test_it_refuses_a_bad_frame_with_a_code(text, data, code):
    with pytest.raises(BadFrame) as refused:
        parse(text, data)
    assert refused.value.code == code


def test_a_frame_just_under_the_limit_is_accepted():
    padding = "x" * (LIMITS.max_frame_bytes - 40)
    assert parse(f'{{"type": "ping", "pad": "{padding}"}}') == ClientMessage("ping")


def test_redact_strings_reaches_nested_values():
    data = {"result": {"error_message": "GET https://u:hunter2@api/x"}, "n": [1, "token=abc"]}
    assert "hunter2" not in json.dumps(redact_strings(data))
    assert "abc" not in json.dumps(redact_strings(data))
    assert redact_strings(data)["n"][0] == 1


@pytest.mark.parametrize(
    ("query", "watch"),
    [(b"", EVERY), (b"other=1", EVERY), (b"check=42", Watch(check=42)),
     (b"v=2&check=7", Watch(check=7))],
)  # fmt: skip
def test_the_query_string_says_what_a_connection_watches(query, watch):
    assert parse_watch(query) == watch


@pytest.mark.parametrize("query", [b"check=", b"check=x", b"check=-1", b"check=0", b"check=1e3",
                                   b"check=1&check=1", b"check=" + b"9" * 19])  # fmt: skip
def test_a_malformed_check_is_refused(query):
    with pytest.raises(BadFrame) as refused:
        parse_watch(query)
    assert refused.value.code == "bad_field"
