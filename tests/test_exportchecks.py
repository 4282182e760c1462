"""``exportchecks`` writes what ``importchecks`` reads: a round trip changes nothing."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from connections_app.management.commands.exportchecks import FIELDS
from connections_app.models import HealthCheck

pytestmark = pytest.mark.django_db

SECRETS = ("hunter2", "s3cret-token")


@pytest.fixture
def checks() -> list[HealthCheck]:
    HealthCheck.objects.all().delete()  # the self-checks are not this test's
    return [
        HealthCheck.objects.create(
            name="api",
            target="https://user:hunter2@api.internal/health?x=1",
            http_method="POST",
            request_headers="Authorization: Bearer s3cret-token\nX-Env: prod",
            request_body="{}",
            follow_redirects=False,
            max_redirects=3,
            accepted_statuses="200,204",
            body_regex="ok|fine",
            json_path="$.db.ok",
            json_expected="true",
            ignore_tls_errors=True,
            tls_warn_days=30,
            degraded_after_ms=250.5,
            tags="prod,web",
        ),
        HealthCheck.objects.create(name="backup", kind="push", target="nightly", grace=120),
        HealthCheck.objects.create(
            name="names",
            kind="dns",
            target="api.test",
            dns_record_type="MX",
            dns_resolver="127.0.0.1:5353",
            dns_expected="mail.test",
        ),
        HealthCheck.objects.create(
            name="pg",
            kind="postgres",
            target="postgres://app:hunter2@db.internal/app",
            enabled=False,
            critical=False,
        ),
        HealthCheck.objects.create(name="port", kind="tcp", target="127.0.0.1:5432"),
    ]


def snapshot() -> dict[str, dict]:
    return {
        check.name: {name: getattr(check, name) for name in [*FIELDS, "push_token", "pk"]}
        for check in HealthCheck.objects.all()
    }


def export(tmp_path, *flags: str):
    path = tmp_path / "checks.json"
    call_command("exportchecks", str(path), *flags)
    return path


def import_(path) -> str:
    out = StringIO()
    call_command("importchecks", str(path), stdout=out)
    return out.getvalue()


def test_a_round_trip_with_secrets_changes_nothing(checks, tmp_path):
    before = snapshot()
    path = export(tmp_path, "--with-secrets")
    assert "0 checks created, 5 updated" in import_(path)
    assert snapshot() == before


def test_a_masked_export_hides_every_secret_and_its_round_trip_changes_nothing(checks, tmp_path):
    before = snapshot()
    path = export(tmp_path)
    text = path.read_text()
    assert not any(secret in text for secret in SECRETS)
    assert checks[1].push_token not in text and "push_token" not in text
    item = next(i for i in json.loads(text) if i["name"] == "api")
    assert item["request_headers"] == "Authorization: ***\nX-Env: ***"
    import_(path)
    assert snapshot() == before


def test_an_export_with_secrets_rebuilds_the_checks_elsewhere(checks, tmp_path):
    before = {
        name: {k: v for k, v in fields.items() if k != "pk"} for name, fields in snapshot().items()
    }
    path = export(tmp_path, "--with-secrets")
    HealthCheck.objects.all().delete()
    assert "5 checks created" in import_(path)
    after = {
        name: {k: v for k, v in fields.items() if k != "pk"} for name, fields in snapshot().items()
    }
    assert after == before  # push tokens too: the jobs' ping URLs keep working


def test_a_masked_export_cannot_create_checks_it_has_no_secrets_for(checks, tmp_path):
    path = export(tmp_path)
    HealthCheck.objects.all().delete()
    with pytest.raises(CommandError, match="export with --with-secrets"):
        import_(path)
    assert not HealthCheck.objects.exists()


def test_it_writes_to_stdout_by_default(checks):
    out = StringIO()
    call_command("exportchecks", stdout=out)
    assert [item["name"] for item in json.loads(out.getvalue())] == [
        "api",
        "backup",
        "names",
        "pg",
        "port",
    ]


def test_a_push_token_of_the_wrong_shape_is_refused(checks, tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([{"name": "backup", "push_token": "short"}]))
    with pytest.raises(CommandError, match="push_token: expected a token"):
        import_(path)


def test_the_readme_example_imports_and_round_trips(tmp_path):
    import re
    from pathlib import Path

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    example = re.search(r"for `importchecks`:\n\n```json\n(.*?)```", readme, re.S).group(1)
    path = tmp_path / "readme.json"
    path.write_text(example)
    assert "6 checks created" in import_(path)
    before = snapshot()
    import_(export(tmp_path, "--with-secrets"))
    assert snapshot() == before
