"""How a check's secrets look to anyone but the runner: the target and the request headers
masked, for the admin and for ``exportchecks`` without ``--with-secrets``."""

from __future__ import annotations

from connections_app.http_options import parse_headers
from connections_app.redaction import REDACTED, redact, redact_url


def masked_headers(text: str) -> str:
    """Request headers as staff see them: each name, every value masked."""
    try:
        headers = parse_headers(text)
    except ValueError:  # stored before validation existed: show nothing of it
        return REDACTED if text.strip() else ""
    return "\n".join(f"{name}: {REDACTED}" for name in headers)


def masked(target: str) -> str:
    """A target as staff see it. A URL is taken apart (``redact_url``): a password with a
    space, or a parameter name written ``api%5Fkey``, escapes the patterns of ``redact``."""
    return redact_url(target) if "://" in target else redact(target)
