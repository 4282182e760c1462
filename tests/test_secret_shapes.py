"""Every secret shape of issue 15 out of every output: the redaction, an error's stored text,
the error statistics, a log line, a WebSocket frame, and end to end through ``runchecks``.

Token-shaped fakes are assembled at run time so that no scanner mistakes this file for a leak.
"""

from __future__ import annotations

import base64
import json
import sqlite3

import aiohttp
import pytest
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from connections_app.error_handler import ErrorHandler
from connections_app.errors import ErrorCategory
from connections_app.logging_config import get_logger
from connections_app.masking import masked
from connections_app.probes.result import ProbeResult
from connections_app.redaction import bare_urls, redact
from connections_app.runchecks_output import render_table
from realtime.protocol import encode_event, redact_strings
from tests.conftest import manage
from tests.test_logging_config import log_file, logging_state  # noqa: F401 - fixtures


def fake(prefix: str, length: int) -> str:
    alphabet = "AbCdEfGhJkMnPqRsTuVwXyZ23456789"
    return prefix + (alphabet * (length // len(alphabet) + 1))[:length]


BASIC = base64.b64encode(b"alice:Basic-Pw-9").decode()

# (name, text as an error would carry it, the secret that must not appear)
SHAPES = [
    ("query_auth_key", "GET https://api.example.com/v1?auth_key=AuthK3y-1&x=1", "AuthK3y-1"),
    ("query_subscription_key", "GET /v1?subscription-key=SubK3y-2 -> 401", "SubK3y-2"),
    ("query_pw", "GET http://127.0.0.1/login?user=a&pw=Pw-Val-3 -> 403", "Pw-Val-3"),
    ("query_app_key", "call /q?app_key=AppK3y-4&page=1", "AppK3y-4"),
    ("query_consumer_key", "call /oauth?consumer_key=ConsK3y-5", "ConsK3y-5"),
    ("query_userkey", "GET /feed?userkey=UserK3y-6", "UserK3y-6"),
    ("url_token_user", "POST https://Tok3nAsUser77@api.example.com/x", "Tok3nAsUser77"),
    (
        "sentry_dsn",
        "sentry: https://0123456789abcdef0123456789abcdef@o1.ingest.sentry.io/42 unreachable",
        "0123456789abcdef0123456789abcdef",
    ),
    (
        "telegram_bot",
        f"POST https://api.telegram.org/bot123456789:{fake('AAH', 32)}/sendMessage failed",
        fake("AAH", 32),
    ),
    (
        "telegram_bot_path",
        f"POST /bot123456789:{fake('AAH', 32)}/sendMessage -> 404",
        fake("AAH", 32),
    ),
    ("discord_path", f"POST /api/webhooks/123456/{fake('Dw-', 40)} -> 404", fake("Dw-", 40)),
    (
        "discordapp_url",
        f"POST https://discordapp.com/api/webhooks/1/{fake('Dx', 40)}",
        fake("Dx", 40),
    ),
    (
        "slack_path",
        f"POST /services/T0ABC/B0DEF/{fake('Sl', 24)} -> 404",
        fake("Sl", 24),
    ),
    (
        "slack_workflow",
        f"POST https://hooks.slack.com/workflows/T1/A2/{fake('Wf', 24)}",
        fake("Wf", 24),
    ),
    ("sendgrid", f"mail via {fake('SG.', 22)}.{fake('', 43)} refused", fake("", 43)),
    ("google_oauth", f"auth {fake('ya29.', 60)} expired", fake("ya29.", 60)[5:]),
    ("stripe_webhook_secret", f"signing with {fake('whsec_', 32)}", fake("whsec_", 32)),
    (
        "percent_password",
        "GET /login?next=%2Fa%3Fpassword%3DPct-Pw-10 -> 302",
        "Pct-Pw-10",
    ),
    (
        "percent_dsn",
        "GET /x?dsn=postgres%3A%2F%2Fapp%3APct-Dsn-11%40db%2Fapp -> 500",
        "Pct-Dsn-11",
    ),
    ("double_percent", "GET /x?q=password%253DDbl-Pw-12", "Dbl-Pw-12"),
    ("bare_basic", f"sent Basic {BASIC} to 127.0.0.1", BASIC),
    ("name_with_newline", "pass\nword=NewLine-13", "NewLine-13"),
    ("name_with_zero_width", "pass\u200bword=ZeroWidth-14", "ZeroWidth-14"),
    (
        "name_full_width",
        "\uff50\uff41\uff53\uff53\uff57\uff4f\uff52\uff44=FullWidth-15",
        "FullWidth-15",
    ),
    (
        "library_exception_url",
        "TooManyRedirects: 0, message='', url='https://u:Lib-Pw-16@127.0.0.1:8/a?token=Lib-T#f'",
        "Lib-",
    ),
    ("url_fragment", "GET https://127.0.0.1/cb#access_token=Frag-17", "Frag-17"),
]
IDS = [name for name, _, _ in SHAPES]


def _probe_message(text: str) -> str:
    return ProbeResult.failure(ErrorCategory.UNKNOWN, text).error_message


def _probe_exception(text: str) -> str:
    return ProbeResult.from_exception(RuntimeError(text)).error_message


def _error_stat(text: str) -> str:
    handler = ErrorHandler()
    handler.report(RuntimeError(text), "check.http", "api")
    (pending,) = handler.take_pending().values()
    return pending.last_message


def _frame(text: str) -> str:
    return encode_event("check.result", redact_strings({"error_message": text, "name": "api"}))


class _Outcome:
    """What ``render_table`` reads of one run: a check, its status, its result."""

    def __init__(self, message: str) -> None:
        self.check = type("Check", (), {"name": "api", "kind": "http"})()
        self.status = "down"
        self.result = ProbeResult.failure(ErrorCategory.UNKNOWN, message)


def _table(text: str) -> str:
    return render_table([_Outcome(text)])


OUTPUTS = {
    "redact": redact,
    "admin_target": masked,
    "bare_urls": bare_urls,
    "probe_message": _probe_message,
    "probe_exception": _probe_exception,
    "error_stat": _error_stat,
    "websocket_frame": _frame,
    "runchecks_table": _table,
}


@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize(("name", "text", "secret"), SHAPES, ids=IDS)
def test_no_shape_survives_any_output(name, text, secret, output):
    shown = OUTPUTS[output](text)
    assert secret not in shown
    assert secret not in json.dumps(shown)  # nor its escaped form


@pytest.mark.parametrize(("name", "text", "secret"), SHAPES, ids=IDS)
def test_no_shape_reaches_the_log_file(log_file, name, text, secret):  # noqa: F811
    get_logger("test.shapes").warning("marker %s", text)
    written = log_file.read_text()
    assert "marker" in written
    assert secret not in written


@pytest.mark.parametrize(("name", "text", "secret"), SHAPES, ids=IDS)
def test_redaction_is_idempotent_on_every_shape(name, text, secret):
    assert redact(redact(text)) == redact(text)
    assert bare_urls(bare_urls(text)) == bare_urls(text)


def test_an_error_url_keeps_scheme_host_port_and_path_only():
    text = "failed: https://bob:pw@api.example.com:8443/v1/x?q=1&sig=2#frag then more"
    assert bare_urls(text) == "failed: https://api.example.com:8443/v1/x then more"


def test_aiohttp_exception_texts_lose_their_urls():
    url = URL("https://u:Lib-Pw@127.0.0.1:8443/a?access=Lib-Q#Lib-F")
    info = aiohttp.RequestInfo(url, "GET", CIMultiDictProxy(CIMultiDict()), url)
    error = aiohttp.TooManyRedirects(info, (), status=302, message="Found")
    assert "Lib-" in str(error)  # the library's own text quotes the whole URL
    for shown in (_error_stat_of(error), ProbeResult.from_exception(error).error_message):
        assert "Lib-" not in shown
        assert "https://127.0.0.1:8443/a" in shown


def _error_stat_of(error: BaseException) -> str:
    handler = ErrorHandler()
    handler.report(error, "check.http", "api")
    (pending,) = handler.take_pending().values()
    return pending.last_message


@pytest.mark.parametrize(
    "text",
    [
        "Basic authentication failed for bob",
        "100% of checks up",
        "GET http://127.0.0.1:8000/a%20b answered 200",
        "pass\nfail",
        "token\nbucket",
    ],
)
def test_ordinary_words_are_not_eaten(text):
    assert redact(text) == text


def test_a_check_named_oauth_token_keeps_its_category_in_the_log(log_file):  # noqa: F811
    handler = ErrorHandler(logger=get_logger("test.oauth"))
    handler.report(ConnectionRefusedError(111, "Connection refused"), "check.tcp", "oauth token")
    written = log_file.read_text()
    assert "check.tcp oauth token: refused: ConnectionRefusedError" in written


def test_a_status_change_of_a_check_named_oauth_token_keeps_its_words(log_file):  # noqa: F811
    from connections_app.monitor import _log_change

    check = type("Check", (), {"name": "oauth token"})()
    change = type(
        "Change",
        (),
        {
            "health_check": check,
            "from_status": "up",
            "to_status": "down",
            "reason_category": "timeout",
            "during_maintenance": False,
        },
    )()
    _log_change(change)
    assert "check oauth token: up -> down (timeout)" in log_file.read_text()


@pytest.mark.slow
def test_a_probe_error_holding_secrets_is_masked_end_to_end(sqlite_file_env, http_target):
    """Each shape as a check's expected text, which its failure message quotes: the stored
    result, the error statistics, the log and the JSON report must all lose it."""
    env = sqlite_file_env
    checks = [
        {
            "name": f"shape {name}",
            "kind": "http",
            "target": http_target.url("/ok"),
            "expected_body": text,
            "interval": 10,
            "timeout": 2,
        }
        for name, text, _ in SHAPES
        if "\n" not in text
    ]
    imported = manage(env, "importchecks", "-", stdin=json.dumps(checks))
    assert imported.returncode == 0, imported.stderr
    run = manage(env, "runchecks", "--once", "--format", "json")
    assert run.stdout, run.stderr
    report = json.loads(run.stdout)
    assert len(report["checks"]) >= len(checks)
    path = env["DATABASE_URL"].removeprefix("sqlite:///")
    with sqlite3.connect(path) as db:
        stored = db.execute("select error_message from connections_app_checkresult").fetchall()
        stats = db.execute("select last_message from connections_app_errorstat").fetchall()
    assert len(stored) >= len(checks) and stats
    outputs = {"json": run.stdout, "log": run.stderr, "results": repr(stored), "stats": repr(stats)}
    for name, text, secret in SHAPES:
        if "\n" in text:
            continue
        for where, shown in outputs.items():
            assert secret not in shown, (name, where)
    assert "body_mismatch" in run.stdout


def test_the_invisible_characters_are_every_format_character():
    import unicodedata

    from connections_app.redaction import INVISIBLE

    for code in range(0x80, 0x110000):
        if unicodedata.category(chr(code)) == "Cf":
            assert INVISIBLE.fullmatch(chr(code)), hex(code)


@pytest.mark.parametrize(
    "line",
    [
        "%" + "25" * 500_000,
        "password%3D" * 90_000,
        "%25" * 300_000,
        "a%" * 500_000,
        "\\n" * 500_000,
    ],
    ids=["deep_percent", "nested_pairs", "percent_runs", "lone_percents", "escaped_newlines"],
)
def test_hostile_encoded_lines_are_redacted_without_raising(line):
    assert len(redact(line)) <= len(line) + 100
