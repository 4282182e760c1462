"""``manage.py importchecks FILE``: create or update checks from a JSON list, all or nothing.

Each item has the model's field names (``name`` required, and ``target`` for a new check), each
value of its JSON type: strings, numbers, ``true``/``false`` for ``enabled`` and ``critical``
only, and ``tags`` as a string or a list of strings. A check with the same name is updated: the
fields the item leaves out keep their stored values. Any invalid item stops the import with its
position, name and field in one line, exit code 3, and nothing is written.
"""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from connections_app.cli import EXIT_USAGE, counted
from connections_app.management.usage import UsageExitMixin
from connections_app.masking import masked, masked_headers
from connections_app.models import (
    KIND_CHOICES,
    MAX_IN_A_ROW,
    MAX_INTERVAL_SECONDS,
    MAX_TIMEOUT_SECONDS,
    RULE_FIELDS,
    HealthCheck,
)
from connections_app.redaction import REDACTED, redact

STRINGS = (
    "name",
    "kind",
    "target",
    "expected_body",
    "http_method",
    "request_headers",
    "request_body",
    "accepted_statuses",
    "body_regex",
    "json_path",
    "json_expected",
    "dns_record_type",
    "dns_resolver",
    "dns_expected",
    "public_name",
)
NUMBERS = ("interval", "timeout", "degraded_after_ms", "grace")
INTEGERS = (
    "failures_before_down",
    "successes_before_up",
    "expected_status_min",
    "expected_status_max",
    "max_redirects",
    "tls_warn_days",
)
BOOLEANS = (
    "enabled",
    "critical",
    "upside_down",
    "follow_redirects",
    "ignore_tls_errors",
    "public",
)
#: Fields whose JSON null means "off".
NULLABLE = ("degraded_after_ms",)
IMPORTABLE = {*STRINGS, *NUMBERS, *INTEGERS, *BOOLEANS, "tags"}
#: Not a rule, but what keeps a push check's URL when it moves (exportchecks --with-secrets).
PUSH_TOKEN = "push_token"
_TOKEN_SHAPE = re.compile(r"^[A-Za-z0-9_-]{20,64}$")
#: PostgreSQL refuses a NUL in text (SQLite keeps it, and cuts the text there for C readers).
_NUL = "contains a NUL character (\\u0000), which no text field may hold"
#: How each field with secrets is masked: a value written so stands for the stored one.
MASKS = {"target": masked, "request_headers": masked_headers}

HELP = (
    "Create or update health checks from FILE, a JSON list of objects ('-' reads stdin). "
    "Fields: name (string, required); target (string, required for a new check); kind ("
    + ", ".join(kind for kind, _ in KIND_CHOICES)
    + f"; default http); interval (seconds, 1 to {MAX_INTERVAL_SECONDS}; default 30); "
    f"timeout (seconds, above 0, at most {MAX_TIMEOUT_SECONDS} and below the interval; "
    f"default 5); failures_before_down (1 to {MAX_IN_A_ROW}; default 3); "
    f"successes_before_up (DOWN to UP, 1 to {MAX_IN_A_ROW}; default 1); degraded_after_ms "
    "(a success slower than this is DEGRADED; null: off, the default); upside_down (true: "
    "the check passes when the target fails; default false); "
    "expected_status_min and expected_status_max (100 to 599; default 200 and 399); "
    "expected_body (string); HTTP: http_method (GET, HEAD, POST), request_headers ('Name: "
    "value' lines or a JSON object, as a string), request_body (POST), follow_redirects "
    "(default true), max_redirects (default 10), accepted_statuses ('200, 204': replaces the "
    "range), body_regex, json_path and json_expected, ignore_tls_errors (default false), "
    "tls_warn_days (default 14; 0: off); grace (push: seconds a ping may be late; default "
    "60); dns_record_type (A, AAAA, CNAME, MX, TXT), dns_resolver (ip[:port]), dns_expected; "
    "enabled (true or false; default true); critical (true: /health/ answers 503 while this "
    "check is DOWN; default false); tags (a string, comma or space separated, or a list of "
    'strings such as ["prod", "db"]). '
    "push_token (a push check's URL token, from exportchecks --with-secrets). A masked "
    "value (***, as exportchecks writes without --with-secrets) keeps the stored secret. "
    "An item whose name exists updates that check and keeps the fields it leaves out. "
    "All or nothing: an invalid item is named with its position and field, nothing is "
    "stored, and the exit code is 3."
)


class Command(UsageExitMixin, BaseCommand):
    help = HELP

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="a JSON file holding a list of checks; - reads stdin")

    def handle(self, *args, **options) -> None:
        items = _load(options["file"])
        try:
            created, updated = import_checks(items)
        except ValueError as exc:
            raise CommandError(str(exc), returncode=EXIT_USAGE) from None
        self.stdout.write(f"{counted(created, 'check')} created, {updated} updated")


class LongNumber:
    """A JSON integer too long for Python to read (over ``sys.get_int_max_str_digits()``):
    kept as its length, so that the item and field it sits in can be named."""

    def __init__(self, digits: str) -> None:
        self.length = len(digits.lstrip("-"))

    def __repr__(self) -> str:
        return f"<a number of {self.length} digits>"


def _integer(digits: str) -> int | LongNumber:
    try:
        return int(digits)
    except ValueError:  # longer than the interpreter converts
        return LongNumber(digits)


def _load(path: str) -> list:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
        items = json.loads(text, parse_int=_integer)
    except OSError as exc:
        raise CommandError(f"{path}: {exc.strerror}", returncode=EXIT_USAGE) from None
    except UnicodeDecodeError as exc:
        raise CommandError(
            f"{path}: not UTF-8 text (byte {exc.start}): save the file as UTF-8",
            returncode=EXIT_USAGE,
        ) from None
    except json.JSONDecodeError as exc:
        raise CommandError(f"{path}: not JSON: {exc}", returncode=EXIT_USAGE) from None
    except RecursionError:
        raise CommandError(f"{path}: not JSON: nested too deeply", returncode=EXIT_USAGE) from None
    if not isinstance(items, list):
        raise CommandError(f"{path}: expected a JSON list of checks", returncode=EXIT_USAGE)
    return items


@transaction.atomic
def import_checks(items: list) -> tuple[int, int]:
    """Validate and save every item, or raise ValueError naming the first bad one."""
    created = updated = 0
    first_position: dict[str, int] = {}
    for position, item in enumerate(items, start=1):
        check, is_new = _build(position, item)
        # Saving both would silently keep the second: the file says two different things.
        earlier = first_position.setdefault(check.name, position)
        if earlier != position:
            raise ValueError(
                f"check #{earlier} and check #{position} are both named {check.name!r}: "
                "a name may appear once in a file"
            )
        check.save(update_fields=None if is_new else [*RULE_FIELDS, PUSH_TOKEN])
        created += is_new
        updated += not is_new
    return created, updated


def _build(position: int, item: object) -> tuple[HealthCheck, bool]:
    where = f"check #{position}"
    if not isinstance(item, dict):
        raise ValueError(f"{where}: expected an object, got {_shown(item)}")
    unknown = sorted(set(item) - IMPORTABLE - {PUSH_TOKEN})
    if unknown:
        raise ValueError(f"{where}: unknown field {', '.join(unknown)}")
    name = item.get("name")
    if isinstance(name, str) and "\x00" in name:
        raise ValueError(f"{where}: name: {_NUL}")
    if not isinstance(name, str) and name is not None:
        raise ValueError(f"{where}: name: expected a string, got {_shown(name)}")
    if not name or not name.strip():
        raise ValueError(f"{where}: name: this field is required")
    where = f"check #{position} ({name!r})"
    values = {}
    for field, value in item.items():
        try:
            values[field] = _converted(field, value)
        except ValueError as exc:
            raise ValueError(f"{where}: {field}: {exc}") from None
    check = HealthCheck.objects.filter(name=name).first()
    is_new = check is None
    check = check or HealthCheck()
    for field, value in values.items():
        try:
            setattr(check, field, _unmasked(check, field, value, is_new))
        except ValueError as exc:
            raise ValueError(f"{where}: {field}: {exc}") from None
    try:
        check.full_clean()
    except ValidationError as exc:
        field, errors = next(iter(exc.message_dict.items()))
        raise ValueError(f"{where}: {field}: {' '.join(errors)}") from None
    return check, is_new


def _unmasked(check: HealthCheck, field: str, value: object, is_new: bool) -> object:
    """``value``, or the stored secret when ``value`` is that secret as masked."""
    if field not in MASKS or not isinstance(value, str) or REDACTED not in value:
        return value
    stored = getattr(check, field)
    if not is_new and MASKS[field](stored) == value:
        return stored
    raise ValueError(
        f"{REDACTED} stands for a stored secret, and this check has none that matches: "
        "export with --with-secrets, or type the secret in full"
    )


def _converted(field: str, value: object) -> object:
    """``value`` as the model takes it, or ValueError saying which JSON type ``field`` takes."""
    if value is None and field in NULLABLE:
        return None
    if field in BOOLEANS:
        if isinstance(value, bool):
            return value
        raise ValueError(f"expected true or false, got {_shown(value)}")
    if field in STRINGS:
        if isinstance(value, str) and "\x00" in value:
            raise ValueError(_NUL)
        if isinstance(value, str):
            return value
        raise ValueError(f"expected a string, got {_shown(value)}")
    if field == "tags":
        return _tags(value)
    if field == PUSH_TOKEN:
        if isinstance(value, str) and _TOKEN_SHAPE.match(value):
            return value
        raise ValueError("expected a token of 20 to 64 letters, digits, '-' and '_'")
    if isinstance(value, LongNumber):
        raise ValueError(f"expected a number, got {value!r}")
    # A number; JSON's true and false are not (bool is an int in Python).
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected a number, got {_shown(value)}")
    try:
        number = float(value)  # a huge JSON integer does not fit
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise ValueError(f"expected a finite number, got {_shown(value)}")
    if field in INTEGERS:
        if not number.is_integer():
            raise ValueError(f"expected a whole number, got {_shown(value)}")
        return int(value)
    return number


def _tags(value: object) -> str:
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError(_NUL)
        return value
    if not isinstance(value, list) or not all(isinstance(tag, str) for tag in value):
        raise ValueError(f"expected a string or a list of strings, got {_shown(value)}")
    for tag in value:
        if "\x00" in tag:
            raise ValueError(_NUL)
        if not tag.strip() or any(c == "," or c.isspace() for c in tag):
            raise ValueError(f"{tag!r} is not one tag: a tag is text with no comma or space")
    return ",".join(value)


def _shown(value: object) -> str:
    """A JSON value as it was written, shortened: ``"abc"``, ``["a"]``, ``true``, ``NaN``."""
    if isinstance(value, LongNumber):
        return repr(value)
    try:
        text = json.dumps(value, ensure_ascii=False, default=repr)
    except (ValueError, RecursionError):  # too deep to write back
        text = type(value).__name__
    text = redact(text)  # a value in the wrong place may still hold a password
    return text if len(text) <= 60 else f"{text[:57]}..."
