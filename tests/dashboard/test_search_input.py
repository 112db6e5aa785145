"""Whatever a query string holds, the dashboard answers: odd searches find nothing, odd
numbers are a 400, never a 500."""

from __future__ import annotations

from urllib.parse import quote

from tests.dashboard.support import Dashboard

ODD_SEARCHES = ["99999999999999999999999", "²", "-1", "%", "_", "'", "٣", "\x00", "%ED%A0%80"]


def test_odd_searches_find_nothing(dashboard: Dashboard) -> None:
    dashboard.wait_state(dashboard.submit("Echo", "ordinary"), "succeeded")
    http = dashboard.http()
    for needle in ODD_SEARCHES:
        for state in ("", "queued"):  # the queue's own listing searches too
            path = f"/api/jobs?q={quote(needle, safe='%')}&state={state}"
            answer = http.get(path)
            assert answer.status == 200, (path, answer.status, answer.text)
            assert answer.json()["jobs"] == [] and answer.json()["total"] == 0, path
        page = http.get(f"/dashboard/jobs?q={quote(needle, safe='%')}")
        assert page.status == 200, (needle, page.status)
    found = http.get("/api/jobs?q=1").json()
    assert [job["id"] for job in found["jobs"]] == [1], "a plain id still finds its job"


def test_odd_numbers_are_a_bad_request(dashboard: Dashboard) -> None:
    http = dashboard.http()
    for query in ["page=²", "page=99999999999999999999", "per_page=٣", "page=-1", "page=0"]:
        answer = http.get(f"/api/jobs?{quote(query, safe='=')}")
        assert answer.status == 400, (query, answer.status, answer.text)
    for query in ["job=²", "job=99999999999999999999999"]:
        answer = http.get(f"/api/events?{quote(query, safe='=')}")
        assert answer.status == 400, (query, answer.status, answer.text)
