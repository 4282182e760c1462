"""The HTTP rule fields read as the probe uses them: headers, accepted statuses, the body regex,
the JSON condition. Each reader raises ``ValueError`` with a sentence a person can act on, and
``http_option_errors`` turns them into one message per field for ``HealthCheck.clean``.

Header values are secrets (tokens, API keys): no message here quotes one.
"""

from __future__ import annotations

import json
import re
from typing import Any

from jsonpath_ng.exceptions import JSONPathError
from jsonpath_ng.ext import parse as parse_jsonpath

METHODS = ("GET", "HEAD", "POST")
MAX_REDIRECTS = 30
MAX_HEADERS = 50
#: A pattern longer than this is more likely a mistake than a rule (and slower to run).
MAX_REGEX = 200
MAX_BODY = 10_000
# RFC 9110 token characters: what a header name may hold.
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
NO_VALUE = object()


def parse_headers(text: str) -> dict[str, str]:
    """``{"Name": "value"}`` from a JSON object of strings or ``Name: value`` lines."""
    text = text.strip()
    if not text:
        return {}
    if text.startswith("{"):
        try:
            pairs = json.loads(text)
        except json.JSONDecodeError as exc:
            message = f"Not a JSON object (line {exc.lineno}): use Name: value lines."
            raise ValueError(message) from None
        if not all(isinstance(v, str) for v in pairs.values()):
            raise ValueError("Each header value in the JSON object must be a string.")
        items = list(pairs.items())
    else:
        items = [_header_line(n, line) for n, line in enumerate(text.splitlines(), 1) if line]
    if len(items) > MAX_HEADERS:
        raise ValueError(f"At most {MAX_HEADERS} headers.")
    for name, value in items:
        if not _TOKEN.match(name):
            raise ValueError(f"{name!r} is not a header name: letters, digits and -_.!#$%&'*+^`|~")
        if any(c in value for c in "\r\n\0"):
            raise ValueError(f"The value of {name} holds a line break.")
    return dict(items)


def _header_line(number: int, line: str) -> tuple[str, str]:
    name, colon, value = line.partition(":")
    if not colon:
        raise ValueError(f"Line {number} is not 'Name: value'.")
    return name.strip(), value.strip()


def parse_statuses(text: str) -> frozenset[int]:
    """``"200, 204 301"`` -> ``{200, 204, 301}``; empty: none listed (the range applies)."""
    statuses = set()
    for part in text.replace(",", " ").split():
        if not (part.isascii() and part.isdigit()) or not 100 <= int(part) <= 599:
            raise ValueError(f"{part!r} is not an HTTP status (100 to 599).")
        statuses.add(int(part))
    return frozenset(statuses)


def compile_regex(pattern: str) -> re.Pattern[str]:
    if len(pattern) > MAX_REGEX:
        raise ValueError(f"At most {MAX_REGEX} characters.")
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"Not a regular expression: {exc}.") from None


def compile_jsonpath(expression: str):
    try:
        return parse_jsonpath(expression)
    except (JSONPathError, Exception) as exc:  # the parser raises bare Exceptions too
        raise ValueError(f"Not a JSONPath expression: {exc}.") from None


def expected_json(text: str) -> Any:
    """The expected value: JSON when it parses (``true``, ``3``, ``"ok"``), else the text;
    ``NO_VALUE`` when blank (the path must only match something)."""
    if not text.strip():
        return NO_VALUE
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def http_option_errors(check, refused: set[str] = frozenset()) -> dict[str, str]:
    """One message per HTTP rule field that is wrong (none for a field in ``refused``: it
    has its message from ``clean_fields`` already)."""
    errors: dict[str, str] = {}
    readers = (
        ("request_headers", parse_headers),
        ("accepted_statuses", parse_statuses),
        ("body_regex", lambda v: v and compile_regex(v)),
        ("json_path", lambda v: v and compile_jsonpath(v)),
    )
    for field, read in readers:
        try:
            read(getattr(check, field) or "")
        except ValueError as exc:
            errors[field] = str(exc)
    if len(check.request_body or "") > MAX_BODY:
        errors["request_body"] = f"At most {MAX_BODY} characters."
    elif check.request_body and check.http_method != "POST":
        errors["request_body"] = "A body is sent with POST only: choose POST or leave it blank."
    if "max_redirects" not in refused and (check.max_redirects or 0) > MAX_REDIRECTS:
        errors["max_redirects"] = f"At most {MAX_REDIRECTS} redirects."
    reads_body = check.expected_body or check.body_regex or check.json_path
    if check.http_method == "HEAD" and reads_body:
        errors["http_method"] = "A HEAD answer has no body to check: choose GET or POST."
    if check.json_expected and not check.json_path:
        errors["json_expected"] = "An expected value needs a JSON path to compare it with."
    return {field: error for field, error in errors.items() if field not in refused}
