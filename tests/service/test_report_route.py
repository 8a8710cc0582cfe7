"""``GET /report`` without a server: query parsing (every bad value is a 400 naming the field the
caller used), auth, formats and headers, over a real SQLite store behind Starlette's test client.

The same route under a real ``bentoml serve`` (and forwarded by the LLM service) is checked in
tests/service/test_service_e2e.py; this module covers the combinations cheaply.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime, timezone

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route
from starlette.testclient import TestClient

from auditor.reports import ReportModel
from auditor.runtime.store import open_store
from service.report_route import QueryError, parse_report_query, report_response

from record_samples import AUTH, T0, TOKEN
from record_samples import sample_record as _record

@pytest.fixture(scope="module")
def store(tmp_path_factory):
    s = open_store(f"sqlite:///{tmp_path_factory.mktemp('route') / 'audits.sqlite'}")
    for i in range(6):  # minutes 0..5: models alternate, every third audit flagged
        s.append(_record(i, ("m-a", "m-b")[i % 2], flagged=i % 3 == 0))
    yield s
    s.close()


def _client(store, token: str | None) -> TestClient:
    async def report(request: Request):
        return await report_response(request, store, token)

    return TestClient(Starlette(routes=[Route("/report", report, methods=["GET"])]))


@pytest.fixture(scope="module")
def client(store):
    with _client(store, TOKEN) as c:
        yield c


def test_html_report_with_security_headers(client):
    r = client.get("/report", headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    assert "default-src 'none'" in r.headers["content-security-policy"] and r.headers["cache-control"] == "no-store"
    for section in ('id="models"', 'id="counts"', 'id="distributions"', 'id="flagged"', 'id="chain"',
                    'id="settings"', 'id="methods"'):
        assert section in r.text
    assert '<div class="v" id="total-audits">6</div>' in r.text and 'data-chain-ok="true"' in r.text


def test_json_report_filters_by_period_and_model(client):
    r = client.get("/report", params={"from": "2025-03-01T12:01:00Z", "to": "2025-03-01T12:05:00Z",
                                      "format": "json"}, headers=AUTH)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    report = ReportModel.model_validate_json(r.text)
    assert report.counts.total == 4  # minutes 1, 2, 3, 4: from inclusive, to exclusive
    assert report.counts.by_model == {"m-a": 2, "m-b": 2} and report.counts.flagged == 1  # minute 3
    assert report.chain.ok and report.chain.checked == 6  # the chain check covers the whole store
    # aliases, unix seconds and the model filter
    r = client.get("/report", params={"since": str(T0.timestamp()), "until": "2025-03-02", "model": "m-b",
                                      "format": "JSON"}, headers=AUTH)
    report = ReportModel.model_validate_json(r.text)
    assert report.period.model == "m-b" and report.counts.by_model == {"m-b": 3}
    assert report.period.since == T0 and report.period.until == datetime(2025, 3, 2, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"from": "yesterday"}, "from"),
        ({"since": "2025-13-01"}, "since"),
        ({"to": "nan"}, "to"),
        ({"until": "1e300"}, "until"),
        ({"from": "inf"}, "from"),
        ({"since": "-nan"}, "since"),
        ({"from": "1e400"}, "from"),
        ({"from": "0001-01-01T00:00:00+14:00"}, "from"),  # before year 1 once in UTC (was a 500)
        ({"to": "9999-12-31T23:59:59-14:00"}, "to"),  # after year 9999 once in UTC (was a 500)
        ({"from": "2025-03-02", "to": "2025-03-01"}, "from"),  # empty period
        ({"since": "2025-03-01", "until": "2025-03-01"}, "since"),  # empty period (to is exclusive)
        ({"from": "2025-03-01", "since": "2025-03-01"}, "since"),  # aliases together
        ({"format": "pdf"}, "format"),
        ({"model": "x" * 300}, "model"),
        ({"model": "a\nb"}, "model"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_query_values_are_400_naming_the_field(client, params, field):
    r = client.get("/report", params=params, headers=AUTH)
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["field"] == field and body["error"].startswith(f"{field}: ")


def test_repeated_parameter_is_rejected(client):
    r = client.get("/report?format=json&format=html", headers=AUTH)
    assert r.status_code == 400 and r.json()["field"] == "format"


def test_token_required_when_configured(client, store):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        r = client.get("/report", headers=headers)
        assert r.status_code == 401 and r.json()["field"] == "authorization"
        assert r.headers["www-authenticate"].startswith("Bearer")
    with _client(store, None) as open_client:  # no token configured: open
        assert open_client.get("/report", params={"format": "json"}).status_code == 200


def test_auth_is_checked_before_the_query():
    """An unauthenticated caller learns nothing, not even which parameters are wrong."""
    with _client(None, TOKEN) as c:
        assert c.get("/report", params={"from": "yesterday"}).status_code == 401


def test_store_failure_is_an_error_response():
    """A store that cannot be read answers 503 with a message, not a crash or a hung request."""

    class Failing:
        """Every read fails as a corrupted SQLite file does."""

        url = "sqlite:///broken.sqlite"

        def __getattr__(self, name: str):
            raise sqlite3.DatabaseError("file is not a database")

    with _client(Failing(), None) as c:
        r = c.get("/report")
    assert r.status_code == 503 and "could not be read" in r.json()["error"]


def test_parse_defaults_and_open_ends():
    q = parse_report_query({})
    assert (q.since, q.until, q.model, q.format) == (None, None, None, "html")
    q = parse_report_query({"from": "", "to": "2025-03-01T13:00:00+01:00", "model": ""})
    assert q.since is None and q.until == T0 and q.model is None  # the offset is converted to UTC
    with pytest.raises(QueryError) as e:
        parse_report_query({"to": "soon"})
    assert e.value.field == "to" and "soon" in e.value.message
