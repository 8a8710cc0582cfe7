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
    unavailable(f"{names[0]} not found: install it ({install}; .ci/run does)")


def unavailable(reason: str) -> None:
    """A test's prerequisite is missing: fail under ``CI`` (``.ci/run`` provides every one, so a
    missing one is a broken install step), skip with ``reason`` on a developer's machine."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must run this test", pytrace=False)
    pytest.skip(reason)
