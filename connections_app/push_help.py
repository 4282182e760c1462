"""The copy-ready lines a check's admin page shows: a push check's cron, systemd timer and
Celery beat lines; a public check's badge URLs and Markdown."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest
from django.urls import reverse

from project.config import DEFAULT_SITE_URL


def ping_url(request: HttpRequest, token: str) -> str:
    """The check's ping URL on ``SITE_URL`` when it is set, else on the host of ``request``
    (the page staff are looking at is on an address their jobs can reach, more likely than
    this machine's loopback)."""
    return site_url_for(request, reverse("ping", args=[token]))


def site_url_for(request: HttpRequest, path: str) -> str:
    """``path`` on ``SITE_URL`` when it is set, else on the host of ``request``."""
    site = settings.SITE_URL.rstrip("/")
    return request.build_absolute_uri(path) if site == DEFAULT_SITE_URL else f"{site}{path}"


def badge_lines(request: HttpRequest, check) -> list[tuple[str, str, str]]:
    """A public check's badges: (what, URL, Markdown to paste in a README)."""
    lines = []
    for what, name, alt in (
        ("Status", "badge-status", "status"),
        ("Uptime, 30 days", "badge-uptime", "uptime"),
    ):
        url = site_url_for(request, reverse(name, args=[check.badge_token]))
        lines.append((what, url, f"![{check.public_name or 'service'} {alt}]({url})"))
    return lines


def push_lines(url: str) -> dict[str, str]:
    curl = f"curl -fsS -m 10 --retry 3 -o /dev/null {url}"
    return {
        "cron": f"*/5 * * * * /path/to/job.sh && {curl}",
        "cron, with failures and the job's output": (
            f"*/5 * * * * /path/to/job.sh 2>&1 | curl -fsS -m 10 --retry 3 --data-binary @- "
            f"{url}/${{PIPESTATUS[0]}}  # with SHELL=/bin/bash"
        ),
        "systemd (in the job's .service)": (
            f"ExecStartPre=-{curl.replace(url, url + '/start')}\n"
            f"ExecStartPost=-{curl}\n"
            f"ExecStopPost=-/bin/sh -c '[ \"$SERVICE_RESULT\" = success ] || {curl}/fail'"
        ),
        "Celery beat (in the task's module)": (
            "import requests\n"
            "from celery.signals import task_failure, task_success\n\n"
            f'PING = "{url}"\n\n'
            "@task_success.connect(sender=my_task)\n"
            "def ping_ok(sender=None, **kwargs):\n"
            "    requests.get(PING, timeout=10)\n\n"
            "@task_failure.connect(sender=my_task)\n"
            "def ping_failed(sender=None, **kwargs):\n"
            '    requests.get(PING + "/fail", timeout=10)'
        ),
    }
