"""External programs the tests need (promtool, prometheus, chromium): a clear skip on a developer's
machine without them, a failure in CI (`CI` set, as .ci/run does), where .ci/run installs them, so a
missing install step can never pass as skipped tests."""

from __future__ import annotations

import os
import shutil

import pytest


def require_program(*names: str, install: str) -> str:
    """Path of the first of ``names`` on PATH; else skip (locally) or fail (CI) naming ``install``."""
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    message = f"{names[0]} not found: install it ({install}; .ci/run does)"
    if os.environ.get("CI"):
        pytest.fail(f"{message}; CI must run this test", pytrace=False)
    pytest.skip(message)
