"""Where hpcgan keeps the files it derives (reference statistics, proxy classifiers, compiled
kernels): ``$HPCGAN_CACHE``, else ``$XDG_CACHE_HOME/hpcgan`` (default ``~/.cache/hpcgan``). ``make horovod`` caches its wheel there too."""
from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "HPCGAN_CACHE"


def cache_dir() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hpcgan"
