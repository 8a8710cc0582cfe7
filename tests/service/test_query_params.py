"""``GET /audits`` without a server, and the query parsers it shares with ``GET /report``.

Every bad value a URL can carry (``nan``, ``inf``, ``1e400``, an unreadable or out-of-range date, a
``limit`` that is zero, negative, huge or not an integer, a repeated parameter, a forged cursor) must
be a 400 naming the parameter, and must not reach the store. The route runs over a real SQLite store
behind Starlette's test client; the same route under ``bentoml serve`` is in tests/service/test_service_e2e.py.
"""

from __future__ import annotations

import base64
from datetime import datetime, timezone

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route
from starlette.testclient import TestClient

from auditor.runtime.store import open_store
from service.audits_route import audits_response, parse_audits_query
from service.query import QueryError, parse_time_param
from record_samples import AUTH, T0, TOKEN
from record_samples import sample_record as _record


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    s = open_store(f"sqlite:///{tmp_path_factory.mktemp('audits') / 'audits.sqlite'}")
    for i in range(6):  # minutes 0..5 after T0: models alternate, every third audit flagged
        s.append(_record(i, ("m-a", "m-b")[i % 2], flagged=i % 3 == 0))
    yield s
    s.close()


class Untouchable:
    """A store that fails the test if a request with a bad value ever reaches it."""

    def __getattr__(self, name: str):
        raise AssertionError(f"the store was used ({name}) for a request that should have been rejected")


def _client(store, token: str | None = TOKEN) -> TestClient:
    async def audits(request: Request):
        return await audits_response(request, store, token)

    return TestClient(Starlette(routes=[Route("/audits", audits, methods=["GET"])]))


@pytest.fixture(scope="module")
def client(store):
    with _client(store) as c:
        yield c


def _minutes(response) -> list[int]:
    """The request ids ``req-<minute>`` of a page, as minutes after T0."""
    assert response.status_code == 200, response.text
    return [int(a["request_id"].removeprefix("req-")) for a in response.json()["audits"]]


def test_filters_and_paging(client):
    assert _minutes(client.get("/audits", headers=AUTH)) == [0, 1, 2, 3, 4, 5]
    period = {"since": "2025-03-01T12:01:00Z", "until": str((T0.timestamp() + 4 * 60))}  # ISO and unix seconds
    assert _minutes(client.get("/audits", params=period, headers=AUTH)) == [1, 2, 3]
    # naive = UTC, an offset is honoured: 13:02+01:00 is 12:02Z
    assert _minutes(client.get("/audits", params={"since": "2025-03-01T13:02:00+01:00", "until": "2025-03-01T12:03"},
                               headers=AUTH)) == [2]
    assert _minutes(client.get("/audits", params={"flagged": "true", "model": "m-b"}, headers=AUTH)) == [3]
    first = client.get("/audits", params={"limit": "4"}, headers=AUTH)
    assert _minutes(first) == [0, 1, 2, 3]
    rest = client.get("/audits", params={"limit": "4", "cursor": first.json()["next_cursor"]}, headers=AUTH)
    assert _minutes(rest) == [4, 5] and rest.json()["next_cursor"] is None
    # empty values are "not given"
    assert _minutes(client.get("/audits", params={"since": "", "limit": "", "flagged": ""}, headers=AUTH)) == list(range(6))


def _forged_cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"since": "nan"}, "since"),
        ({"since": "NaN"}, "since"),
        ({"until": "inf"}, "until"),
        ({"until": "-Infinity"}, "until"),
        ({"since": "1e400"}, "since"),  # overflows to inf
        ({"since": "1e20"}, "since"),  # finite, past year 9999
        ({"until": "-1e20"}, "until"),
        ({"since": "yesterday"}, "since"),
        ({"since": "2025-13-01"}, "since"),
        ({"until": "2025-02-30T00:00:00Z"}, "until"),
        ({"since": "0001-01-01T00:00:00+14:00"}, "since"),  # before year 1 once in UTC
        ({"until": "9999-12-31T23:59:59-14:00"}, "until"),  # after year 9999 once in UTC
        ({"since": "2025-03-02", "until": "2025-03-01"}, "since"),  # empty period
        ({"since": "2025-03-01", "until": "2025-03-01"}, "since"),  # until is exclusive
        ({"limit": "0"}, "limit"),
        ({"limit": "-5"}, "limit"),
        ({"limit": "1001"}, "limit"),
        ({"limit": "9" * 5000}, "limit"),  # more digits than int() accepts
        ({"limit": "2.5"}, "limit"),
        ({"limit": "1e3"}, "limit"),
        ({"limit": "nan"}, "limit"),
        ({"limit": "0x10"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"flagged": "maybe"}, "flagged"),
        ({"model": "x" * 300}, "model"),
        ({"model": "a\x00b"}, "model"),
        ({"cursor": "!!"}, "cursor"),
        ({"cursor": _forged_cursor("s" + "9" * 30)}, "cursor"),  # beyond SQLite's integers
        ({"cursor": _forged_cursor("s-1")}, "cursor"),
        ({"cursor": "A" * 100}, "cursor"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_values_are_400_naming_the_field(client, params, field):
    r = client.get("/audits", params=params, headers=AUTH)
    assert r.status_code == 400, r.text[:300]
    body = r.json()
    assert body["field"] == field and body["error"].startswith(f"{field}: "), body


@pytest.mark.parametrize("query", ["limit=5&limit=10", "since=2025-03-01&since=2025-03-02", "model=a&model=b"])
def test_repeated_parameters_are_rejected(query):
    with _client(Untouchable()) as c:
        r = c.get(f"/audits?{query}", headers=AUTH)
    assert r.status_code == 400 and r.json()["field"] == query.split("=")[0]


def test_bad_values_never_reach_the_store():
    with _client(Untouchable()) as c:
        for params in ({"since": "nan"}, {"limit": "0"}, {"until": "inf"}):
            assert c.get("/audits", params=params, headers=AUTH).status_code == 400


def test_token_checked_before_the_query():
    with _client(Untouchable()) as c:
        r = c.get("/audits", params={"since": "nan"})
        assert r.status_code == 401 and r.json()["field"] == "authorization"


def test_parse_audits_query_values():
    q = parse_audits_query({"since": "0", "until": "2025-03-01", "limit": " +7 ", "flagged": "No", "model": "m"})
    assert q.since == datetime(1970, 1, 1, tzinfo=timezone.utc)
    assert q.until == datetime(2025, 3, 1, tzinfo=timezone.utc)
    assert (q.limit, q.flagged, q.model, q.cursor) == (7, False, "m", None)
    assert parse_audits_query({}).limit == 50 and parse_audits_query({"limit": "1000"}).limit == 1000


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e400", "1e20", "soon", "0001-01-01T00:00:00+14:00", ""])
def test_time_parser_rejects_with_the_field_name(value):
    with pytest.raises(QueryError) as info:
        parse_time_param("until", value)
    assert info.value.field == "until" and str(info.value).startswith("until: ")
