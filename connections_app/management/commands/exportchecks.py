"""``manage.py exportchecks [FILE]``: every check as the JSON list ``importchecks`` reads.

Secrets (the target's password and secret parameters, request header values) are masked
unless ``--with-secrets``; importing a masked export keeps the stored secrets of checks that
exist, so a round trip changes nothing either way. Push tokens are written with
``--with-secrets`` only (they are the push URLs' secret).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandParser

from connections_app.management.commands.importchecks import IMPORTABLE
from connections_app.masking import masked, masked_headers
from connections_app.models import RULE_FIELDS, HealthCheck

FIELDS = [name for name in RULE_FIELDS if name in IMPORTABLE]


def export_checks(with_secrets: bool = False) -> list[dict]:
    return [_item(check, with_secrets) for check in HealthCheck.objects.order_by("name")]


def _item(check: HealthCheck, with_secrets: bool) -> dict:
    item = {name: getattr(check, name) for name in FIELDS}
    if with_secrets:
        if check.push_token:
            item["push_token"] = check.push_token
    else:
        item["target"] = masked(check.target)
        item["request_headers"] = masked_headers(check.request_headers)
    return item


class Command(BaseCommand):
    help = (
        "Write every check as JSON that importchecks reads (FILE, or stdout when left out or "
        "'-'). Secrets are masked unless --with-secrets."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", nargs="?", default="-", help="where to write; - is stdout")
        parser.add_argument(
            "--with-secrets",
            action="store_true",
            help="write passwords, header values and push tokens in full",
        )

    def handle(self, *args, **options) -> None:
        text = json.dumps(export_checks(options["with_secrets"]), indent=2, ensure_ascii=False)
        if options["file"] == "-":
            self.stdout.write(text)
        else:
            Path(options["file"]).write_text(text + "\n")
            sys.stderr.write(f"wrote {options['file']}\n")
