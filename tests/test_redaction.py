"""redact, redact_url, redact_mapping: every secret shape out, everything else untouched.

The main test writes each secret through a real logger configured by ``setup_logging`` to a
file, three ways (in the message, as a %-argument, inside an exception), and reads the file.
Token-shaped fakes are assembled at run time so that no scanner mistakes this file for a leak.
"""

from __future__ import annotations

import time

import pytest

from connections_app.logging_config import get_logger
from connections_app.redaction import REDACTED, redact, redact_mapping, redact_url
from tests.test_logging_config import log_file, logging_state  # noqa: F401 - fixtures


def fake(prefix: str, length: int, alphabet: str = "AbCdEfGhJkMnPqRsTuVwXyZ23456789") -> str:
    """``prefix`` followed by ``length`` characters: a token of the right shape, never real."""
    return prefix + (alphabet * (length // len(alphabet) + 1))[:length]


PEM_BEGIN, PEM_END = "-----BEGIN ", "-----END "
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
    "eyJzdWIiOiJoZWFsdGgiLCJyb2xlIjoiYWRtaW4ifQ."
    "kX2R4mP9qL7vN3sT8wY1zB6cD5eF0gH4jK2"
)

# (name, text as it would appear in a log, the secret that must not appear)
SECRETS = [
    ("postgres_url", "connect postgres://app:Pg-S3cret-1@127.0.0.1:5432/health", "Pg-S3cret-1"),
    ("postgresql_url", "postgresql://app:Pq%40ss-2@127.0.0.1/db failed", "Pq%40ss-2"),
    ("password_with_at", "postgres://app:P@ss-w0rd-3@127.0.0.1/db", "ss-w0rd-3"),
    ("redis_url", "redis://default:R3dis-pw-4@127.0.0.1:6379/0 timed out", "R3dis-pw-4"),
    ("rediss_empty_user", "rediss://:Rs-pw-5@127.0.0.1:6380/1", "Rs-pw-5"),
    ("amqp_url", "broker amqp://guest:Amqp-pw-6@127.0.0.1:5672//", "Amqp-pw-6"),
    ("https_userinfo", "GET https://bob:Http-pw-7@127.0.0.1:8443/api", "Http-pw-7"),
    ("query_access_token", "GET /cb?state=1&access_token=Qtok-8&page=2", "Qtok-8"),
    ("query_api_key", "GET http://127.0.0.1/v1?api_key=Qkey-9", "Qkey-9"),
    ("query_key", "GET http://127.0.0.1/maps?key=Gkey-10&zoom=3", "Gkey-10"),
    ("query_signature", "GET /o?X-Amz-Date=1&X-Amz-Signature=Sig-11abc", "Sig-11abc"),
    ("query_client_secret", "POST /token?client_id=a&client_secret=Cs-12", "Cs-12"),
    ("query_sig_and_auth", "GET /f?sig=Sg-13&auth=Au-13", "-13"),
    ("libpq_dsn", "dbname=health user=app password=Lq-14 host=127.0.0.1", "Lq-14"),
    ("libpq_quoted", "host=127.0.0.1 password='Lq 15 quoted' port=5432", "15 quoted"),
    ("json_password", '{"user": "app", "password": "Js-16"}', "Js-16"),
    ("json_escaped", 'body="{\\"passwd\\": \\"Je-17\\"}"', "Je-17"),
    ("python_repr", "{'api_key': 'Pr-18', 'timeout': 5}", "Pr-18"),
    ("env_variable", "DATABASE_PASSWORD=Env-19 DEBUG=false", "Env-19"),
    ("django_secret_key", "SECRET_KEY = 'Dj-20-insecure'", "Dj-20-insecure"),
    ("bearer_header", "Authorization: Bearer Bt-21.abc.def", "Bt-21"),
    ("basic_header", "Authorization: Basic dXNlcjpCYXNpYy0yMg==", "dXNlcjpCYXNpYy0yMg=="),
    ("headers_dict", "{'Authorization': 'Token Tk-23', 'Accept': '*/*'}", "Tk-23"),
    ("proxy_authorization", "Proxy-Authorization: Basic UHJveHktMjQ=", "UHJveHktMjQ="),
    ("cookie", "Cookie: sessionid=Ck-25; csrftoken=Ck-25b", "Ck-25"),
    ("set_cookie", "Set-Cookie: sessionid=Sc-26; Path=/; HttpOnly", "Sc-26"),
    ("x_api_key", "X-Api-Key: Xk-27", "Xk-27"),
    ("aws_access_key", f"using {fake('AKIA', 16, 'ABCDEFGHJKLMNPQRSTUVWXYZ234567')}", "AKIAABCD"),
    ("aws_secret_key", "aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiEXAMPLE29", "wJalrX"),
    ("jwt", f"rejected {JWT} as expired", "kX2R4mP9qL7vN3sT8wY1zB6cD5eF0gH4jK2"),
    ("jwt_payload", f"rejected {JWT}", "eyJzdWIiOiJoZWFsdGgiLCJyb2xlIjoiYWRtaW4ifQ"),
    (
        "rsa_private_key",
        f"{PEM_BEGIN}RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA31pk\nX9f3k2Lq\n"
        f"{PEM_END}RSA PRIVATE KEY-----",
        "MIIEowIBAAKCAQEA31pk",
    ),
    (
        "encrypted_private_key",
        f"key: {PEM_BEGIN}PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES,0F\n"
        f"b3BlbnNzaC1rZXktdjE33\n{PEM_END}PRIVATE KEY-----",
        "b3BlbnNzaC1rZXktdjE33",
    ),
    ("github_token", f"git push with {fake('ghp_', 36)}", fake("ghp_", 36)),
    ("github_pat", f"token {fake('github_pat_', 60)} denied", fake("github_pat_", 60)[11:]),
    ("slack_bot_token", f"slack {fake('xox' + 'b-', 40)} invalid", fake("xox" + "b-", 40)),
    ("slack_webhook", f"POST https://hooks.slack.com/services/{fake('T', 30)}", fake("T", 30)),
    (
        "discord_webhook",
        f"POST https://discord.com/api/webhooks/1234567890/{fake('Dw-', 40)}",
        fake("Dw-", 40),
    ),
    ("stripe_key", f"charge with {fake('sk_' + 'live_', 24)}", fake("sk_" + "live_", 24)),
    ("google_api_key", f"maps {fake('AIza', 35)} quota", fake("AIza", 35)),
    ("refresh_token_yaml", "refresh_token: Rt-40", "Rt-40"),
    ("passphrase", "ssh passphrase=Pp-41 rejected", "Pp-41"),
    ("standalone_bearer", "sent Bearer Bs42abcdefgh to 127.0.0.1", "Bs42abcdefgh"),
    ("env_prefixed_pwd", "DB_PWD=Pw-43 DB_HOST=127.0.0.1", "Pw-43"),
    ("env_prefixed_pass", "export DB_PASS='Dp 44' MYSQL_PWD=Dp-44b", "Dp 44"),
    ("env_prefixed_pwd_mysql", "MYSQL_PWD=My-45 mysql -h 127.0.0.1", "My-45"),
    ("env_redis_password", "REDIS_PASSWORD=Rp-46 redis-server", "Rp-46"),
    ("env_aws_secret_access_key", "AWS_SECRET_ACCESS_KEY=Ak-47/xYz+q", "Ak-47"),
    ("env_api_token", "MY_API_TOKEN=Mt-48", "Mt-48"),
    ("bare_pass", "login user=app pass=Ps-49 refused", "Ps-49"),
    ("json_pass", '{"user": "app", "pass": "Jp-50"}', "Jp-50"),
    ("flag_space", "pg_dump --password Fl-51 --host 127.0.0.1", "Fl-51"),
    ("flag_equals", "pg_dump --password=Fe-52 --host 127.0.0.1", "Fe-52"),
    ("flag_prefixed_quoted", "app --db-password 'Fq 53' --verbose", "Fq 53"),
    ("flag_short_word", "redis-cli --pass Fs-54 ping", "Fs-54"),
    ("flag_secret_key", "mc alias set --access-key ak --secret-key Fk-59", "Fk-59"),
    (
        "flag_in_argv_repr",
        "Command '['pg_dump', '--password', 'Fa-55']' returned non-zero exit status 1.",
        "Fa-55",
    ),
    ("url_password_with_slash", "postgres://u:a/Us-56@127.0.0.1/db refused", "Us-56"),
    ("redis_url_password_with_slash", "redis://:pa/Rs-57@127.0.0.1:6379", "Rs-57"),
    ("url_password_with_slash_and_at", "postgres://app:x/y@Sa-58@127.0.0.1/db", "Sa-58"),
]


def _write(way: str, text: str, marker: str) -> None:
    logger = get_logger("test.redaction")
    if way == "message":
        logger.warning(f"{marker} {text}")
    elif way == "argument":
        logger.warning("%s said %s", marker, text)
    else:
        try:
            try:
                raise ConnectionError(text)
            except ConnectionError as cause:
                raise RuntimeError(f"{marker} wrapped: {text}") from cause
        except RuntimeError:
            logger.exception("%s probe failed", marker)


@pytest.mark.parametrize("way", ["message", "argument", "exception"])
@pytest.mark.parametrize(("name", "text", "secret"), SECRETS, ids=[s[0] for s in SECRETS])
def test_a_secret_never_reaches_the_log_file(log_file, name, text, secret, way):  # noqa: F811
    marker = f"marker-{name}"
    _write(way, text, marker)
    written = log_file.read_text()
    assert marker in written
    assert secret not in written
    # A URL's user part and query are cut off whole (bare_urls), leaving no mark behind.
    assert REDACTED in written or "://" in text


def test_there_are_at_least_25_distinct_secret_shapes():
    assert len({name for name, _, _ in SECRETS}) >= 25


@pytest.mark.parametrize(
    "text",
    [
        "Connection refused by 127.0.0.1:5432 after 3 attempts",
        "GET http://127.0.0.1:8000/health/?page=2&sort=name answered 503",
        "author=bob keyboard=us monkey: 3 keys=4",
        "Key (fingerprint)=(abc) already exists.",
        "PWD=/srv/app status: ok url=https://127.0.0.1/x",
        "redis://127.0.0.1:6379/0 and postgres://127.0.0.1/db",
        "Basic checks passed; bearer of good news",
        "password reset page sent to bob",
        "compass=3 heading=north",
        "bypass the cache for 127.0.0.1",
        "tests pass: 12, fail: 0",
        "PWD=/srv/app OLDPWD=/srv DB_PASS_FILE=/run/secrets/db",
        "psql -p 5432 -h 127.0.0.1 --no-password health",
        "flags --bypass cache --compass north --token-file /run/secrets/t",
        "GET http://127.0.0.1:8000/users/@me answered 404",
        "GET http://[::1]:8000/x/@y answered 404",
        "",
    ],
)
def test_harmless_text_is_left_alone(text):
    assert redact(text) == text


@pytest.mark.parametrize(("name", "text", "secret"), SECRETS, ids=[s[0] for s in SECRETS])
def test_redacting_twice_changes_nothing(name, text, secret):
    once = redact(text)
    assert redact(once) == once


def test_it_keeps_the_shape_of_what_it_redacts():
    assert redact('{"password": "x1", "user": "bob"}') == '{"password": "***", "user": "bob"}'
    assert redact("postgres://app:pw@127.0.0.1/db") == "postgres://app:***@127.0.0.1/db"
    assert redact("Authorization: Bearer abc") == "Authorization: Bearer ***"
    assert redact("password=abc host=127.0.0.1") == "password=*** host=127.0.0.1"


def test_redact_url_hides_password_and_secret_parameters_only():
    url = "https://app:p@ss@127.0.0.1:8443/v1/items?Key=k1&page=2&access_token=t1#top"
    assert (
        redact_url(url)
        == "https://app:***@127.0.0.1:8443/v1/items?Key=***&page=2&access_token=***#top"
    )
    assert redact_url("redis://:pw@127.0.0.1:6379/0") == "redis://:***@127.0.0.1:6379/0"
    assert redact_url("postgres://u:a/b@127.0.0.1/db?x=1") == "postgres://u:***@127.0.0.1/db?x=1"
    assert redact_url("http://127.0.0.1:8000/health/") == "http://127.0.0.1:8000/health/"


def test_redact_url_survives_a_url_it_cannot_parse():
    assert redact_url("http://[::1/x?token=abc") == "http://[::1/x?token=***"


def test_redact_mapping_replaces_secret_headers_and_redacts_the_rest():
    headers = {
        "Authorization": "Bearer abc",
        "COOKIE": "sessionid=s1",
        "Set-Cookie": "a=b",
        "X-Api-Key": "k1",
        "Proxy-Authorization": "Basic cXE=",
        b"x-auth-token": b"t1",
        "Accept": "application/json",
        "Referer": "https://127.0.0.1/?token=t2",
        "retries": 3,
        "DB_PWD": "p3",
        "compass": "north",
        "nested": {"password": "p1", "host": "127.0.0.1"},
    }
    assert redact_mapping(headers) == {
        "Authorization": "***",
        "COOKIE": "***",
        "Set-Cookie": "***",
        "X-Api-Key": "***",
        "Proxy-Authorization": "***",
        b"x-auth-token": b"***",
        "Accept": "application/json",
        "Referer": "https://127.0.0.1/?token=***",
        "retries": 3,
        "DB_PWD": "***",
        "compass": "north",
        "nested": {"password": "***", "host": "127.0.0.1"},
    }


@pytest.mark.parametrize(
    "line",
    [
        "a" * 1_000_000,
        "a." * 500_000,
        "password" * 125_000,
        "password=" * 111_111,
        "x://" * 250_000,
        "x://a:" * 166_666,
        "x://a:" + "@" * 1_000_000,
        f"{PEM_BEGIN}PRIVATE KEY-----" * 37_000,
        '"password": "' + "a" * 1_000_000,
        "\\" * 1_000_000,
        "?key=" * 200_000,
        "Authorization: " + "x" * 1_000_000,
        "eyJaaaaaa." * 100_000,
        "password token x://a:b@ akia eyJ cookie bearer " * 21_000,
        "x://a:b/" * 125_000,
        "--db-" * 200_000,
        "--password " * 90_000,
        "'--password', '" * 66_000,
        "a_pwd_" * 166_666,
        'pass"' * 200_000,
    ],
    ids=lambda line: repr(line[:20]),
)
def test_a_hostile_1_mb_line_is_redacted_in_linear_time(line):
    started = time.perf_counter()
    result = redact(line)
    # A bound against a hang, not a speed target (the machine may be busy): quadratic
    # backtracking on 1 MB takes many minutes; linear redaction takes about a second.
    assert time.perf_counter() - started < 20.0
    assert len(result) <= len(line) + 100


def test_urls_inside_text_keep_only_scheme_host_port_and_path():
    from connections_app.redaction import bare_urls

    text = "POST https://user:pw@hooks.example.com:8443/services/T1/B2?token=abc#x failed"
    assert bare_urls(text) == "POST https://hooks.example.com:8443/services/T1/B2 failed"
    assert bare_urls("see http://[::1]:9/a?b=c") == "see http://[::1]:9/a"
