"""The dashboard's wire format (docs/EVENTS.md): frames out, client messages in.

An event is serialized once, whatever the number of clients (``encode_event``); each client's
frame only adds the schema version and that connection's sequence number (``frame_text``).
Written straight to daphne, the frame is two pieces that are never joined: that prefix, a few
bytes per client, and the body encoded once for every client (``frame_parts``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qs

import orjson
from django.utils import timezone

from connections_app.redaction import bare_urls
from realtime.limits import Limits

SCHEMA_VERSION = 3
#: The channel-layer group every server process joins once (one member per process).
GROUP = "dashboard"

#: Close codes the page acts on: reconnect and resync / log in / not allowed / stop misbehaving.
CLOSE_RESYNC = 4000
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
#: Too many bad frames. Not 1008: daphne (autobahn) sends only 1000 or 3000-4999, for any other
#: code it logs a traceback and closes with 1011; 4008 is 1008 in the application range.
CLOSE_POLICY = 4008
#: The connect's query string asks for something malformed (``?check=abc``) / for a check
#: that does not exist: the page stops and says so, a reconnect would get the same answer.
CLOSE_BAD_REQUEST = 4400
CLOSE_NOT_FOUND = 4404

CLIENT_TYPES = frozenset({"ping", "ack", "filter", "resync"})


def now_iso() -> str:
    return timezone.now().isoformat()


def encode_event(event_type: str, data: Any, at: str | None = None) -> str:
    """The shared body of a frame: ``{"type", "at", "data"}`` as compact JSON."""
    return compact_json({"type": event_type, "at": at or now_iso(), "data": data})


#: What ``compact_json`` hands to ``str`` as ``json.dumps(default=str)`` did: times and
#: dataclasses (orjson would write them its own way); int keys become strings, as in json.
_ORJSON_OPTIONS = (
    orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
)


def compact_json(value: Any) -> str:
    """``value`` as the compact, ASCII-only JSON every frame is made of.

    orjson writes it about 8 times faster than ``json`` (the snapshot encodes 10,000 checks);
    the rare text with a character outside ASCII is written by ``json``, which escapes it, so
    a text's length is its size in bytes wherever frames are measured. No NaN or Infinity:
    browsers' JSON.parse refuses them and would drop the whole frame (orjson writes null,
    ``json`` raises)."""
    raw = orjson.dumps(value, default=str, option=_ORJSON_OPTIONS)
    if raw.isascii():
        return raw.decode()
    return json.dumps(value, separators=(",", ":"), default=str, allow_nan=False)


def frame_text(seq: int, body: str) -> str:
    """One client's frame: the version and its sequence number spliced in front of ``body``."""
    return f'{{"v":{SCHEMA_VERSION},"seq":{seq},{body[1:]}'


def frame_parts(seq: int, body: str) -> tuple[bytes, bytes]:
    """``frame_text(seq, body)`` as UTF-8 in two pieces: the client's own prefix and the
    body's shared rest (encoded once per body, not per client)."""
    return f'{{"v":{SCHEMA_VERSION},"seq":{seq},'.encode(), _shared_rest(body)


@lru_cache(maxsize=8)
def _shared_rest(body: str) -> bytes:
    # Every client of a flush is written the same body in turn: a few entries suffice. A
    # str caches its hash, so a hit costs no pass over the body.
    return body[1:].encode()


def error_body(code: str, message: str) -> str:
    return encode_event("error", {"code": code, "message": message})


def redact_strings(value: Any) -> Any:
    """``value`` with every string in it redacted, every URL cut to scheme, host, port and path
    (frames never carry a target: a URL in one is an error's)."""
    if isinstance(value, str):
        return bare_urls(value)
    if isinstance(value, dict):
        return {key: redact_strings(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_strings(item) for item in value]
    return value


@dataclass(frozen=True)
class Watch:
    """What one connection watches: every check, or those with one of ``tags`` (the
    dashboard's filter), or only the check whose id is ``check`` (that check's page)."""

    tags: frozenset[str] | None = None
    check: int | None = None


#: The dashboard's connection before any filter.
EVERY = Watch()
#: Of the frames about no check in particular, those a check's page shows (it has no header
#: counts, error panel or client count: ``clients``, ``errors.updated`` and ``alerts.failed``
#: would only cost it frames).
PAGE_EVENTS = frozenset({"layer.status"})
_CHECK_ID = re.compile(r"[1-9][0-9]{0,17}")


@dataclass(frozen=True)
class ClientMessage:
    """A valid message from a browser."""

    type: str
    seq: int | None = None
    tags: frozenset[str] | None = None


class BadFrame(Exception):
    """A frame the server refuses; ``code`` goes back to the client in an error frame."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def parse_client_frame(text: str | None, data: bytes | None, limits: Limits) -> ClientMessage:
    """The message in one WebSocket frame; raises ``BadFrame`` for anything else.

    Sizes are checked before decoding, and decoding errors of any kind (deep nesting raises
    RecursionError) become ``BadFrame``: nothing a client sends may raise in the server.
    """
    if text is None:
        raise BadFrame("binary", "binary frames are not accepted; send JSON text")
    if len(text) * 4 > limits.max_frame_bytes and len(text.encode()) > limits.max_frame_bytes:
        raise BadFrame("too_large", f"frames are limited to {limits.max_frame_bytes} bytes")
    try:
        content = json.loads(text)
    except (ValueError, RecursionError):
        raise BadFrame("not_json", "the frame is not valid JSON") from None
    if not isinstance(content, dict):
        raise BadFrame("not_object", "a message is a JSON object with a type")
    kind = content.get("type")
    if not isinstance(kind, str) or kind not in CLIENT_TYPES:
        raise BadFrame("unknown_type", f"type must be one of {', '.join(sorted(CLIENT_TYPES))}")
    if kind == "ack":
        return ClientMessage("ack", seq=_sequence(content.get("seq")))
    if kind == "filter":
        return ClientMessage("filter", tags=_tags(content.get("tags"), limits))
    return ClientMessage(kind)


def _sequence(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BadFrame("bad_field", "ack needs seq: the last sequence number received")
    return value


def _tags(value: object, limits: Limits) -> frozenset[str] | None:
    """The filter's tags, lower case; None (no filter) for null or an empty list."""
    if value is None:
        return None
    if not isinstance(value, list) or len(value) > limits.max_tags:
        raise BadFrame("bad_field", f"tags is a list of at most {limits.max_tags} strings")
    tags = set()
    for tag in value:
        if not isinstance(tag, str) or not 0 < len(tag.strip()) <= limits.max_tag_length:
            raise BadFrame("bad_field", f"a tag is 1 to {limits.max_tag_length} characters")
        tags.add(tag.strip().lower())
    return frozenset(tags) or None


def parse_watch(query_string: bytes) -> Watch:
    """What a connection watches, from its URL's query string: ``check=<id>`` for one check's
    page, nothing for the dashboard (other parameters are ignored). Raises ``BadFrame`` for a
    malformed or repeated ``check``."""
    values = parse_qs(query_string.decode("latin-1"), keep_blank_values=True).get("check")
    if values is None:
        return EVERY
    if len(values) != 1 or not _CHECK_ID.fullmatch(values[0]):
        raise BadFrame("bad_field", "check: one check id, a whole number from 1")
    return Watch(check=int(values[0]))


def shown(
    watch: Watch, check: int | None = None, tags: Iterable[str] | None = None, event: str = ""
) -> bool:
    """Whether a frame reaches a connection watching ``watch``: the one rule for snapshots,
    ``updates`` and every other frame. A frame is about one check (its id ``check`` and its
    ``tags``) or, both None, about no check in particular (``event``: its type).

    A dashboard gets every frame about no check, and a check when it has no tag filter or the
    check has one of the wanted tags (an untagged check has none). A check's page gets only
    what is about its check, and of the rest only ``PAGE_EVENTS``."""
    if check is None and tags is None:
        return watch.check is None or event in PAGE_EVENTS
    if watch.check is not None:
        return check == watch.check
    return watch.tags is None or not watch.tags.isdisjoint(tags or ())
