"""The one redaction function: secrets out of any text before it is logged, stored or sent."""

from __future__ import annotations

import re

_URL_CREDENTIALS = re.compile(
    r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@/\s]+)@", re.I
)
_KEY_VALUE = re.compile(
    r"(?P<key>password|passwd|pwd|secret|token|api[_-]?key|authorization)(?P<sep>\s*[=:]\s*)(?P<value>[^\s&,;]+)",
    re.I,
)
REDACTED = "***"


def redact(text: str) -> str:
    text = _URL_CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:{REDACTED}@", text)
    return _KEY_VALUE.sub(lambda m: f"{m['key']}{m['sep']}{REDACTED}", text)
