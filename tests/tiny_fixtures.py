"""Fixtures shared by the modules that run tiny random-init models: import them into a test module
(``from tiny_fixtures import one_thread, tok  # noqa: F401``) and they apply to that module only."""

from __future__ import annotations

import pytest

from tests.tiny_models import build_tokenizer, single_thread


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread for the module: the tiny models' values are compared to the last bit."""
    with single_thread():
        yield


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer()
