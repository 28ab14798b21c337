"""Finding runs: a filter from an untrusted query string, pages, counts by status."""
from __future__ import annotations

import pytest

from engine.history import RunFilter, counts, parse_time, search, total
from engine.state import Status
from engine.store import Store


@pytest.mark.parametrize("text, expected", [
    ("2026-12-07", 1796601600.0),
    ("2026-12-07T08:00", 1796630400.0),
    ("2026-12-07T08:00:00Z", 1796630400.0),
    ("2026-12-07T09:00:00+01:00", 1796630400.0),
    ("yesterday", None), ("", None), ("9" * 50, None), ("2026-13-40", None), ("\x00", None),
])
def test_times_are_iso_8601_in_utc_unless_they_say_otherwise(text, expected):
    assert parse_time(text) == expected


@pytest.mark.parametrize("text", ["0001-01-01T00:00+14:00", "0001-01-01T00:00:00+23:59", "9999-12-31T23:59-14:00",
                                  "9999-12-31T23:00:00-23:59"])
def test_a_time_whose_utc_date_falls_outside_years_1_to_9999_is_not_a_time(text):
    """The filter shows its times back in UTC (links, the form): one beyond year 1..9999 would raise there."""
    assert parse_time(text) is None
    f = RunFilter.parse({"since": text, "until": text})
    assert (f.since, f.until) == (None, None) and len(f.problems) == 2
    assert f.query() == {}


@pytest.mark.parametrize("text", ["0001-01-01", "0999-06-30T12:00", "2026-12-07T08:00:00", "9999-12-31T23:59:59"])
def test_a_filters_times_go_back_into_links_as_the_same_times(text):
    """The next page's link holds the filter: year 1 written as "1-01-01" would be lost there."""
    f = RunFilter.parse({"since": text, "until": text})
    again = RunFilter.parse(f.query())
    assert (again.since, again.until) == (f.since, f.until) == (parse_time(text),) * 2 and not again.problems


@pytest.mark.parametrize("query, field, value, problem", [
    ({"status": "failed"}, "status", Status.FAILED, None),
    ({"status": "Exploded"}, "status", None, "status: unknown status"),
    ({"flow": "  orders  "}, "flow", "orders", None),
    ({"flow": "x" * 201}, "flow", None, "flow: longer than 200"),
    ({"q": "a\x00b"}, "text", None, "q: not text"),
    ({"since": "soon"}, "since", None, "since: not an ISO 8601"),
    ({"until": "2026-12-07"}, "until", 1796601600.0, None),
    ({"trigger": ""}, "trigger", None, None),
])
def test_a_filter_keeps_what_it_understands_and_names_the_rest(query, field, value, problem):
    f = RunFilter.parse(query)
    assert getattr(f, field) == value
    assert (problem is None and not f.problems) or any(p.startswith(problem) for p in f.problems)


def test_runs_are_found_by_filter_a_page_at_a_time_and_counted(tmp_path):
    store = Store(tmp_path / "state.db")
    for i in range(30):
        store.create_run({"id": f"run{i:02d}", "flow": "a" if i % 2 else "b", "status": "Failed" if i % 3 == 0 else "Succeeded",
                          "created": 1000.0 + i, "trigger": "manual", "dedupe_key": f"key-{i}"})
    assert [r.id for r in search(store, RunFilter(), limit=3)] == ["run29", "run28", "run27"]
    assert [r.id for r in search(store, RunFilter(), offset=27, limit=10)] == ["run02", "run01", "run00"]
    assert total(store, RunFilter(flow="a")) == 15
    assert counts(store, RunFilter(flow="b", status=Status.FAILED)) == {"Failed": 5, "Succeeded": 10}  # status ignored
    assert [r.id for r in search(store, RunFilter(text="key-17"))] == ["run17"]
    assert [r.id for r in search(store, RunFilter(text="%"))] == []  # no LIKE pattern: text is text
    assert [r.id for r in search(store, RunFilter(since=1028.0))] == ["run29", "run28"]
    assert search(store, RunFilter(), offset=-5, limit=10**9)[0].id == "run29"  # clamped
    store.close()
