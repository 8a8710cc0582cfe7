"""Schemathesis against a real ``bentoml serve``: no 5xx and no answer outside the document.

The served OpenAPI document (``GET /docs.json``, built by ``service/openapi.py``) covers every route:
``/generate``, ``/v1/*``, ``/audit``, ``/audits``, ``/audits/{audit_id}``, ``/auditor/status``,
``/report``. Schemathesis (pinned in the ``test`` extra) generates requests from it in positive and
negative modes (``--mode all``), with and without the bearer token, and applies every check but one:
``positive_data_acceptance`` demands a 2xx for every schema-valid body, which an API with semantic
rules that JSON Schema cannot state must fail (a span must occur in the prompt, ``model`` must be the
served model, exactly one of ``prompt`` and ``messages``, a cursor must come from a previous page).
Everything else is checked: ``not_a_server_error`` (no 5xx), status codes, content types, headers
and bodies conforming to the document, negative data rejected, undeclared methods answered 405, auth
enforced. Bounded: 25 examples per operation and a fixed seed, about a minute on 2 cores.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest

from tests.serving import BentoServer, save_tiny_model

pytestmark = pytest.mark.slow

TOKEN = "schemathesis-token"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    model = save_tiny_model(tmp_path_factory.mktemp("models") / "tiny-llama")
    srv = BentoServer({"AUDITOR_MODEL": str(model), "AUDITOR_MODEL_LABEL": "tiny-llama", "AUDITOR_N_PLAYERS": "3",
                       "AUDITOR_ANSWER_TOKENS": "2", "AUDITOR_MAX_NEW_TOKENS": "2", "AUDITOR_SAMPLE_RATE": "1.0",
                       "AUDITOR_LOW_CONFIDENCE_THRESHOLD": "none", "AUDITOR_MAX_AUDITS_PER_MINUTE": "none",
                       "AUDITOR_SYNC_AUDIT_TIMEOUT_S": "20", "AUDITOR_AUTH_TOKEN": TOKEN})
    srv.start()
    yield srv
    srv.stop()


def _schemathesis() -> list[str]:
    pytest.importorskip("schemathesis")
    exe = shutil.which("schemathesis") or shutil.which("st")
    return [exe] if exe else [sys.executable, "-m", "schemathesis.cli"]


@pytest.mark.parametrize("with_token", [True, False], ids=["token", "no-token"])
def test_the_server_keeps_to_its_openapi_document(server, with_token, tmp_path):
    log_start = len(server.log_tail(10**9))
    cmd = [*_schemathesis(), "run", f"{server.url}/docs.json", "--checks", "all",
           "--exclude-checks", "positive_data_acceptance", "--mode", "all", "--max-examples", "25",
           "--seed", "18", "--no-color", "--continue-on-failure", "--request-timeout", "30",
           "--suppress-health-check", "all", "--report-dir", str(tmp_path),
           "--generation-database", "none"]  # no example database left in the working tree
    if with_token:
        cmd += ["-H", f"Authorization: Bearer {TOKEN}"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)  # its caches stay there
    output = result.stdout + result.stderr
    tested = re.search(r"(\d+) generated", output)
    print(output[-1500:])
    assert result.returncode == 0, output[-8000:]
    assert tested and int(tested.group(1)) > 500
    served = server.log_tail(10**9)[log_start:]
    assert not re.search(r"status=5\d\d", served), "a 5xx in the server log"
