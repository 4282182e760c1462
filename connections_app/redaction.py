"""The one redaction function: secrets out of any text before it is logged, stored or sent.

A few precompiled patterns, each for one family of secret shapes and each guarded by plain
substring checks: a line with none of the trigger words (almost every line) costs a handful of
``in`` tests and is returned as it was. Replacements keep the name and drop the value, so a
redacted line still says *what* was hidden, and redacting twice changes nothing.

No catastrophic backtracking: every open-ended repetition is either possessive/atomic or starts
after a look-behind that only lets it begin where the previous character could not continue it
(a repetition that can do neither is bounded), so a 1 MB line of hostile text is scanned in
linear time.
"""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata
from collections.abc import Callable, Mapping
from urllib.parse import unquote, unquote_plus, urlsplit, urlunsplit

REDACTED = "***"
PRIVATE_KEY_REDACTED = f"-----BEGIN PRIVATE KEY-----{REDACTED}-----END PRIVATE KEY-----"

# Key names that hold a secret wherever they appear: `DB_PASSWORD=`, `"refresh_token":`.
_SECRET_WORDS = (
    r"passw(?:or)?d|passphrase|secret|token|api[_-]?key|access[_-]?key|private[_-]?key"
    r"|credentials?|signature|session[_-]?id|csrf"
    # Vendors' names for an API key: a bare `key` is too common a word to count by itself.
    r"|(?:auth|app|consumer|subscription|user|client|master|shared|license)[_-]?key"
)
# Names too short or common to match inside other words: secrets as a URL query parameter.
_QUERY_ONLY_KEYS = r"key|sig|auth|session|sid|pass|pwd|pw|jwt|code"
# Two of them name a secret when they end a longer key after a separator (`DB_PWD`,
# `redis.pass`): inside a word they do not (`compass`, `bypass`), and alone `PWD` is the
# shell's working directory.
_SHORT_WORDS = r"pass|pwd"
_SHORT_SUFFIX = r"(?:(?<=[_.-]pass)|(?<=[_.-]pwd))"
_AUTH_SCHEMES = r"bearer|basic|digest|token|negotiate|ntlm|hoba|mutual|aws4-hmac-sha256|apikey"

# Between a key and its value: `=`, `: `, `": "`, and JSON-escaped `\": \"`.
_SEP = r"""(?:\\?["'])?[ \t]*[:=][ \t]*"""
# A value: quoted (also JSON-escaped quotes, also cut off), or a bare run of characters.
_VALUE = r"""
    "(?:[^"\\\n]|\\.)*+(?:"|(?=\n)|\Z)
  | '(?:[^'\\\n]|\\.)*+(?:'|(?=\n)|\Z)
  | \\"(?:[^\\\n]|\\[^"\n])*+(?:\\"|(?=\n)|\Z)
  | [^\s&"'<>]++
"""

_PRIVATE_KEY = re.compile(
    r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----"
    r"[^-]*+(?:-(?!----END)[^-]*+)*+"
    r"(?:-----END[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----)?"
)
_HEADER = re.compile(
    rf"""(?ix)
    (?<![\w.-])(?P<key>(?:proxy-)?authorization|(?:set-)?cookie)
    (?P<sep>{_SEP}(?:\\?["'])?)
    (?P<scheme>(?:{_AUTH_SCHEMES})[ \t]+)?
    [^\r\n"'\\]+
    """
)
_PAIR = re.compile(
    rf"""(?ix)
    (?<![\w.-])(?P<key>
        (?>[\w.-]*?(?:{_SECRET_WORDS})[\w.-]*+)
      | [\w.-]*+{_SHORT_SUFFIX}
        # `pass` alone only before `=` or as a quoted key: "tests pass: 12" is no secret.
      | pass(?=[ \t]*=|\\?["'][ \t]*:)
    )
    (?P<sep>{_SEP})
    (?P<value>{_VALUE})
    """
)
# A command-line option and its value as the next argument: `--db-password x`, and in the
# repr of an argument list (`'--password', 'x'`, as CalledProcessError prints it). The name
# must end in the secret word (or it and `-key`/`-id`): `--token-file` is followed by a path.
# `-p` is left alone: it means a port as often as a password. `--no-password` takes no value.
_FLAG = re.compile(
    rf"""(?ix)
    (?<![\w-])(?P<flag>--(?!no-)(?:
        [\w-]*?(?:{_SECRET_WORDS})(?:[_-](?:key|id))?
      | (?:[\w-]*?-)?(?:{_SHORT_WORDS})
    ))
    (?P<sep>[ \t]++|(?P<quote>["']),[ \t]*+(?P=quote))
    (?!-)(?P<value>{_VALUE})
    """
)
# In a query any name ending in `key` is one (`subscription-key`, `userkey`, `app_key`), and
# any ending in `-pw`/`_pw`: a harmless parameter masked costs nothing.
_QUERY = re.compile(
    rf"(?i)(?P<key>[?&](?:{_QUERY_ONLY_KEYS}|[\w.-]*?(?:key|[_.-]pw|{_SECRET_WORDS}))=)"
    r"[^&#\s\"'<>]*+"
)
# A URL's password runs to the last "@" before the host and may hold "@" and "/" (clients
# refuse a raw "/", but the configuration still says it). A "/" counts only before the first
# "@" (after it, "/" starts the path: `u:p@host/@me`), never right after a port
# (`host:8000/x@y`), and no user part starts with "[" (`[::1]:8000/x@y`): none of those has
# a password. The stretch after a "/" is bounded, else each `x://a:` of a long line would
# scan to the line's end.
_URL = re.compile(
    r"""(?ix)
    (?<![\w+.-])(?P<head>[a-z][\w+.-]*+://[^:/?#@\s\[]*+:)
    (?!\d{0,5}/)[^/?#@\s]*+(?:/[^?#@\s]{0,128}+)?@
    (?:[^/?#@\s]*+@)*+
    """
)
# A token alone as a URL's user (`https://TOKEN@host`, Sentry's DSNs): no name tells it from a
# user name, so every user without a password goes.
_URL_USER = re.compile(r"(?i)(?<![\w+.-])(?P<head>[a-z][\w+.-]*+://)[^:/?#@\s\[]++@")
_BEARER = re.compile(r"(?i)\b(?P<scheme>bearer[ \t]+)[\w.~+/=-]{8,}")
_AWS_PREFIXES = ("AKIA", "ASIA", "ABIA", "ACCA", "AGPA", "AIDA", "AIPA", "ANPA", "ANVA", "AROA")
_TOKEN = re.compile(
    rf"""(?x)\b(?:
      (?:{"|".join(_AWS_PREFIXES)})[A-Z0-9]{{16}}\b
    | gh[pousr]_[A-Za-z0-9]{{30,}}+
    | github_pat_\w{{30,}}+
    | glpat-[\w-]{{20,}}+
    | xox[abposre]-[A-Za-z0-9-]{{10,}}+
    | [rs]k_(?:live|test)_[A-Za-z0-9]{{16,}}+
    | sk-[\w-]{{20,}}+
    | AIza[\w-]{{35}}
    | npm_[A-Za-z0-9]{{36}}
    | eyJ[\w-]{{5,}}+\.eyJ[\w-]{{5,}}+\.[\w-]*+
    | SG\.[\w-]{{16,}}+\.[\w-]{{16,}}+
    | ya29\.[\w-]{{20,}}+
    | whsec_[A-Za-z0-9+/=]{{16,}}+
    )"""
)
_TOKEN_TRIGGERS = tuple(p.lower() for p in _AWS_PREFIXES) + tuple(
    "ghp_ gho_ ghu_ ghs_ ghr_ github_pat_ glpat- xox k_live_ k_test_ sk- aiza npm_ eyj sg. ya29."
    " whsec_".split()
)
# Webhook URLs carry their secret in the path, so a path alone (a host cut off, a proxy's log)
# must lose it too: Slack's /services/T../B../<secret> (also /workflows/, /triggers/).
_SLACK_WEBHOOK = re.compile(
    r"(?P<head>hooks\.slack\.com/(?:services|workflows|triggers)/)[\w/]++"
    r"|(?P<path>/services/T[A-Z0-9]++/B[A-Z0-9]++/)[\w]++"
)
# Discord: /api/webhooks/<id>/<token>, on any host (discord.com, discordapp.com, a proxy).
_DISCORD_WEBHOOK = re.compile(r"(?P<head>/api/webhooks/\d++/)[\w.-]++")
# Telegram's bot API: /bot<id>:<token>/method.
_TELEGRAM_BOT = re.compile(r"(?P<head>/bot\d++:)[\w-]++")
# `Basic <base64 of user:password>` without its header name: only a value that decodes to a
# pair is one ("Basic authentication failed" is not).
_BASIC = re.compile(r"(?i)(?<![\w-])(?P<scheme>basic[ \t]++)(?P<value>[A-Za-z0-9+/]{8,}+={0,2})")
# A whitespace-free run that may be percent-encoded (`password%3Dx`, a DSN inside a query).
_ENCODED = re.compile(r"""(?<![^\s"'<>])[^\s"'<>%]*+%[^\s"'<>]*+""")
# A name broken by a line break (`pass\nword=x`): joined again where the whole is a secret's.
# Also as a repr or JSON writes it (``pass\\nword``).
_BROKEN_NAME = re.compile(
    r"(?<![\w.-])(?P<a>[\w.-]++)(?:\r?\n|\r|(?:\\r)?\\n|\\r)(?P<b>[\w.-]++)(?=[ \t]*[:=])"
)
# Invisible characters as a repr or JSON escapes them (``pass\\u200bword``).
_ESCAPED_INVISIBLE = re.compile(r"(?i)\\(?:u200[b-f]|u206[0-4]|ufeff|u00ad|xad)")


# (lower-case words of which the text must contain one, pattern, replacement), in order.
# Each word list is a superset of what its pattern can match: the check only saves time.
_RULES: tuple[tuple[tuple[str, ...], re.Pattern, Callable[[re.Match], str]], ...] = (
    (("\\u", "\\x"), _ESCAPED_INVISIBLE, lambda m: ""),
    (("\n", "\r", "\\n", "\\r"), _BROKEN_NAME, lambda m: _joined_name(m)),
    (("%",), _ENCODED, lambda m: _decoded(m.group())),
    (("private key",), _PRIVATE_KEY, lambda m: PRIVATE_KEY_REDACTED),
    (
        ("authorization", "cookie"),
        _HEADER,
        lambda m: f"{m['key']}{m['sep']}{m['scheme'] or ''}{REDACTED}",
    ),
    (
        ("pass", "pwd", "secret", "token", "key", "credential", "signature", "session", "csrf"),
        _PAIR,
        lambda m: f"{m['key']}{m['sep']}{_quoted(m['value'])}",
    ),
    (("--",), _FLAG, lambda m: f"{m['flag']}{m['sep']}{_quoted(m['value'])}"),
    (("?", "&"), _QUERY, lambda m: f"{m['key']}{REDACTED}"),
    (("://",), _URL, lambda m: f"{m['head']}{REDACTED}@"),
    (("://",), _URL_USER, lambda m: f"{m['head']}{REDACTED}@"),
    (("bearer",), _BEARER, lambda m: f"{m['scheme']}{REDACTED}"),
    (("basic",), _BASIC, lambda m: _basic(m)),
    (_TOKEN_TRIGGERS, _TOKEN, lambda m: REDACTED),
    (("/services/", "/workflows/", "/triggers/"), _SLACK_WEBHOOK, lambda m: _head(m)),
    (("/api/webhooks/",), _DISCORD_WEBHOOK, lambda m: f"{m['head']}{REDACTED}"),
    (("/bot",), _TELEGRAM_BOT, lambda m: f"{m['head']}{REDACTED}"),
)
_RULES_DECODED = tuple(rule for rule in _RULES if rule[1] is not _ENCODED)
SENSITIVE_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-api-key",
        "x-auth-token",
        "x-amz-security-token",
    }
)
_SECRET_KEY = re.compile(
    rf"(?i:{_SECRET_WORDS})|(?i:[_.-](?:{_SHORT_WORDS}|pw))$|^(?i:{_QUERY_ONLY_KEYS})$"
    r"|(?i:key)$"
)
#: ``extra=CLEAN`` on a log record whose message was built from pieces each redacted on its
#: own: the log filter (logging_config) then leaves it be, since redacting the joined line
#: would read a check named "oauth token" followed by ": down" as a token and its value.
CLEAN = {"clean_message": True}
#: Characters that show as nothing (Unicode's "format" category, Cf: zero-width spaces and
#: joiners, direction marks, tags): inside a name they hide it from every pattern. Written out,
#: not computed at import (half a second); a test checks it against unicodedata.
INVISIBLE = re.compile(
    "[\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890-\u0891\u08e2\u180e\u200b-\u200f"
    "\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\U000110bd\U000110cd"
    "\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001"
    "\U000e0020-\U000e007f]"
)
#: Percent-decoding rounds for a value encoded inside a value inside a URL.
_DECODE_ROUNDS = 3


def redact(text: str) -> str:
    """``text`` with every secret it contains replaced by ``***``.

    Text beyond ASCII is first folded (NFKC: full-width letters become ASCII) and stripped of
    invisible format characters (zero-width space, joiners, direction marks), so that
    ``ｐａｓｓｗｏｒｄ=x`` and ``pass\u200bword=x`` are seen for what they are.
    """
    return _apply(_RULES, _folded(text))


def _folded(text: str) -> str:
    """Full-width letters as ASCII, invisible characters gone; ASCII text as it is."""
    return text if text.isascii() else INVISIBLE.sub("", unicodedata.normalize("NFKC", text))


def _apply(rules: tuple, text: str) -> str:
    lowered = text.lower()
    for words, pattern, replace in rules:
        if any(word in lowered for word in words):
            text = pattern.sub(replace, text)
    return text


def _head(match: re.Match) -> str:
    return f"{match['head'] or match['path']}{REDACTED}"


def _joined_name(match: re.Match) -> str:
    """``pass\nword`` joined into ``password`` when only the whole names a secret."""
    a, b = match["a"], match["b"]
    return a + b if is_secret_key(a + b) and not is_secret_key(b) else match.group()


def _basic(match: re.Match) -> str:
    """``Basic ***`` when the value decodes to ``user:password``; else the text as it was."""
    value = match["value"]
    try:
        decoded = base64.b64decode(value + "=" * (-len(value) % 4), validate=True)
    except (binascii.Error, ValueError):
        return match.group()
    return f"{match['scheme']}{REDACTED}" if b":" in decoded else match.group()


def _decoded(run: str) -> str:
    """A percent-encoded run decoded and redacted when decoding shows a secret in it
    (``dsn=postgres%3A%2F%2Fu%3Apw%40h``); else the run as it was, still encoded."""
    decoded = run
    for _ in range(_DECODE_ROUNDS):
        once = unquote(decoded)
        if once == decoded:
            break
        decoded = once
    if decoded == run:
        return run
    # Without this rule: what is still encoded after the rounds stays so (no recursion).
    decoded = _folded(decoded)
    cleaned = _apply(_RULES_DECODED, decoded)
    return cleaned if cleaned != decoded else run


def redact_url(url: str) -> str:
    """``url`` without its password, secret query parameters or tokens anywhere in it."""
    # First by pattern: a password with a "/" in it would end urlsplit's netloc too early.
    url = _URL.sub(f"\\g<head>{REDACTED}@", url)
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return redact(url)
    netloc = parts.netloc
    if password is not None:
        # The last "@" ends the user information: a password may contain "@" itself.
        userinfo, _, host = netloc.rpartition("@")
        netloc = f"{userinfo.partition(':')[0]}:{REDACTED}@{host}"
    elif "@" in netloc:
        # A user without a password may be a token (`https://TOKEN@host`, a Sentry DSN).
        netloc = f"{REDACTED}@{netloc.rpartition('@')[2]}"
    return urlunsplit(
        parts._replace(
            netloc=redact(netloc),
            path=redact(parts.path),
            query=_redact_parameters(parts.query),
            fragment=_redact_parameters(parts.fragment),
        )
    )


#: A URL inside free text (an exception's message, a receiver's answer).
_URL_IN_TEXT = re.compile(r"""(?i)\b[a-z][\w+.-]*://[^\s'"<>]+""")


def url_origin(url: str) -> str | None:
    """``scheme://host[:port]`` of ``url`` (no user, no path), or None when it is malformed."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port
    except ValueError:
        return None
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}{f':{port}' if port else ''}"


def bare_urls(text: str) -> str:
    """``text`` with every URL in it cut to scheme, host, port and path (no user information,
    query or fragment), then redacted: what a library's error text may show of a URL."""

    def bare(match: re.Match) -> str:
        url = match.group()
        origin = url_origin(url)
        return url if origin is None else redact(origin + urlsplit(url).path)

    # Redacted first: decoding may show a URL (``dsn=postgres%3A%2F%2F...``) to cut as well.
    return _URL_IN_TEXT.sub(bare, redact(text))


def redact_mapping(mapping: Mapping) -> dict:
    """A copy of ``mapping`` (headers, extra context) with secret values replaced.

    Keys are compared without case; str and bytes keys both work (ASGI headers are bytes).
    Values under a harmless key still pass through ``redact``; nested mappings too.
    """
    return {key: _redact_value(key, value) for key, value in mapping.items()}


def is_secret_key(key: str | bytes) -> bool:
    """Whether a header, parameter or field of this name holds a secret."""
    name = key.decode("latin-1") if isinstance(key, bytes) else key
    return name.lower() in SENSITIVE_HEADERS or _SECRET_KEY.search(name) is not None


def _redact_value(key: object, value: object) -> object:
    if isinstance(key, (str, bytes)) and is_secret_key(key):
        return REDACTED.encode() if isinstance(value, bytes) else REDACTED
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, bytes):
        return redact(value.decode("latin-1")).encode("latin-1")
    if isinstance(value, Mapping):
        return redact_mapping(value)
    return value


def _redact_parameters(query: str) -> str:
    """``a=1&token=2`` -> ``a=1&token=***``: by parameter name, then by content."""
    parameters = []
    for parameter in query.split("&") if query else []:
        name, equals, _ = parameter.partition("=")
        secret = equals and is_secret_key(unquote_plus(name))
        parameters.append(f"{name}={REDACTED}" if secret else redact(parameter))
    return "&".join(parameters)


def _quoted(value: str) -> str:
    """``***`` inside the same quotes the value had, so JSON and reprs keep their shape."""
    for quote in ('\\"', '"', "'"):
        if value.startswith(quote):
            closed = len(value) >= 2 * len(quote) and value.endswith(quote)
            return f"{quote}{REDACTED}{quote if closed else ''}"
    return REDACTED
