#!/usr/bin/env python
"""Django's command-line utility, with configuration errors and Ctrl-C reported in one line."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    from django.core.exceptions import ImproperlyConfigured

    try:
        from django.conf import settings

        settings.INSTALLED_APPS  # noqa: B018 - loads the settings so errors surface here
    except ImproperlyConfigured as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        sys.exit(3)
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        # Ctrl-C before a command installed its own handling (Django still starting): a line,
        # not a traceback, and the shell's code for SIGINT.
        command = sys.argv[1] if len(sys.argv) > 1 else "manage.py"
        print(f"{command}: interrupted", file=sys.stderr)
        sys.exit(130)
