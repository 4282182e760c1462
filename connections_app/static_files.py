"""Static files through WhiteNoise: only files it indexed are served, so a path that climbs
out of the static folder (``/static/../project/settings.py``) is an ordinary 404."""

from __future__ import annotations

import os

from whitenoise.middleware import WhiteNoiseMiddleware


class StaticFilesMiddleware(WhiteNoiseMiddleware):
    """WhiteNoise, quiet about a STATIC_ROOT not collected yet: the embedded default serves
    from the apps' own folders (``WHITENOISE_USE_FINDERS``) and runs no collectstatic."""

    def add_files(self, root: str, prefix: str | None = None) -> None:
        if os.path.isdir(root):
            super().add_files(root, prefix)
