"""The reads built beside the storage contract, on both backends: a big loop's rows read in
place (engine.looprows: ``loop_summary``, ``loop_indexes``, ``steps_at``, ``stored_size``,
``blob_sizes``), the web UI's (offloaded values left as references, a loop's iterations a page
at a time, the run history's filters, counts and change detection), a run's trace context and
the Logic Apps SAS key kept in the state database."""
import json

import pytest

import engine
from engine import history, sas
from engine.inspection import Reader
from engine.storage import open_store

from .test_contract import finish

BIG = {"rows": ["x" * 50] * 40}  # past the blob threshold of 100 used below


@pytest.fixture
def loop(state):
    """Run r: a Foreach `loop` of 5 iterations, `sq` in each (iteration 3 failed, iteration 4's
    outputs offloaded), `deep` in a nested loop (not directly inside), and a step after it."""
    store = open_store(state, blob_threshold=100)
    store.create_run({"id": "r", "flow": "f", "status": "Running"})
    for i in range(5):
        store.step_finished("r", f"loop[{i}]/sq", "sq", "Compose", "Failed" if i == 3 else "Succeeded",
                            attempts=1, inputs=i, outputs=BIG if i == 4 else i * i, error=None,
                            started=1.0, ended=2.0)
        store.step_finished("r", f"loop[{i}]/inner[0]/deep", "deep", "Compose", "Succeeded", attempts=1,
                            inputs=None, outputs="d", error=None, started=1.0, ended=2.0)
        store.step_finished("r", f"loop[{i}]", "loop", "Iteration", "Failed" if i == 3 else "Succeeded",
                            attempts=1, inputs=None, outputs=None, error=None, started=1.0, ended=2.0)
    finish(store, "r", "loopy", outputs="not inside")
    yield store
    store.close()


def test_a_loops_summary_counts_its_direct_steps_by_action_and_status(loop):
    rows = {(a, s): (n, top, blobs) for a, s, n, top, _size, blobs in loop.loop_summary("r", "loop", ["sq"])}
    assert rows == {("sq", "Succeeded"): (4, 4, 1), ("sq", "Failed"): (1, 3, 0)}


def test_the_iterations_an_action_ran_in_are_listed_by_index_and_status(loop):
    assert list(loop.loop_indexes("r", "loop", "sq")) == [0, 1, 2, 3, 4]
    assert list(loop.loop_indexes("r", "loop", "sq", ("Failed",))) == [3]
    assert list(loop.loop_indexes("r", "loopy", "sq")) == []


def test_steps_are_read_by_their_paths_and_sized_without_reading_their_blobs(loop):
    got = loop.steps_at("r", ["loop[1]/sq", "loop[4]/sq", "nowhere"])
    assert sorted(got) == ["loop[1]/sq", "loop[4]/sq"] and got["loop[4]/sq"].outputs == BIG
    size, blobs = loop.stored_size("r", ["loop[1]/sq", "loop[4]/sq"])
    assert blobs == 1 and 0 < size < 200
    extra = loop.blob_sizes("r", "loop", "sq")
    assert extra == loop.blob_sizes("r", "loop", "sq", ["loop[4]/sq"]) > len(json.dumps(BIG, separators=(",", ":"))) - 100


def test_an_offloaded_value_can_be_left_as_its_reference_and_fetched_by_digest(loop):
    ref = Reader(loop, "r", blobs=False).step("loop[4]/sq").outputs
    assert set(ref) == {"$blob", "size"} and Reader(loop, "r").step("loop[4]/sq").outputs == BIG
    assert json.loads(loop.blob_data(ref["$blob"])) == BIG
    for hostile in ["0" * 64, "../" * 21 + "x", "A" * 64, "", None, "x" * 10_000, "'; DROP TABLE runs; --"]:
        assert loop.blob_data(hostile) is None and loop.blob_file(hostile) is None


@pytest.mark.parametrize("start, count, bad_only, expected", [
    (0, 500, False, [0, 1, 2, 3, 4]),
    (2, 2, False, [2, 3]),
    (0, 500, True, [3]),
    (4, 10, True, []),
])
def test_a_loops_iterations_are_read_a_page_at_a_time_in_index_order(loop, start, count, bad_only, expected):
    reader = Reader(loop, "r")
    steps = reader.iteration_page("loop", start, count, bad_only=bad_only)
    assert [s.path for s in steps] == [f"loop[{i}]" for i in expected]
    assert reader.loop_counts("loop")[0] == {"Succeeded": 4, "Failed": 1}


def _runs(store):
    for i, (flow, status, trigger) in enumerate([("orders", "Succeeded", "web"), ("orders", "Failed", "web"),
                                                ("billing", "Succeeded", "cron"), ("orders", "Queued", "cron")]):
        store.create_run({"id": f"run{i}-abc", "flow": flow, "status": status, "trigger": trigger,
                          "created": 1_700_000_000.0 + i, "dedupe_key": f"evt_{i}%_"})
    store.flush()


@pytest.mark.parametrize("query, expected", [
    ({}, ["run3-abc", "run2-abc", "run1-abc", "run0-abc"]),
    ({"flow": "orders", "status": "failed"}, ["run1-abc"]),
    ({"trigger": "cron"}, ["run3-abc", "run2-abc"]),
    ({"q": "run2"}, ["run2-abc"]),
    ({"q": "%_"}, ["run3-abc", "run2-abc", "run1-abc", "run0-abc"]),  # in every dedupe key, literally
    ({"q": "_%"}, []),
    ({"q": "?' OR 1=1 --"}, []),
    ({"since": "2023-11-14T22:13:22Z"}, ["run3-abc", "run2-abc"]),
    ({"until": "2023-11-14T22:13:21", "flow": "orders"}, ["run0-abc"]),
])
def test_the_run_history_filters_pages_and_counts_alike(store, query, expected):
    _runs(store)
    f = history.RunFilter.parse(query)
    assert [r.id for r in history.search(store, f)] == expected
    assert [r.id for r in history.search(store, f, offset=1, limit=1)] == expected[1:2]
    assert history.total(store, f) == len(expected)
    assert sum(history.counts(store, f).values()) == len(history.search(store, f.__class__(
        **{**f.__dict__, "status": None})))


def test_the_history_fingerprint_changes_when_a_run_or_its_steps_change(store):
    _runs(store)
    before, one = history.fingerprint(store), history.fingerprint(store, "run3-abc")
    finish(store, "run3-abc", "a")
    assert history.fingerprint(store, "run3-abc") != one and history.fingerprint(store) == before
    store.update_run("run3-abc", status="Running", started=5.0)
    assert history.fingerprint(store) != before
    assert history.progress(store, "run3-abc") == {"status": "Running", "steps": 1}
    store.create_run({"id": "child", "flow": "f", "status": "Queued", "parent_id": "run3-abc"})
    assert [r.id for r in history.related(store, "run3-abc")["children"]] == ["child"]


def test_a_runs_trace_context_is_kept_with_it(store):
    trace = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    store.create_run({"id": "r", "flow": "f", "status": "Queued", "trace": trace})
    assert store.get_run("r").trace == trace
    store.update_run("r", trace={"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"})
    assert store.get_run("r").trace["traceparent"].startswith("00-111")


def test_the_sas_key_kept_in_the_state_database_signs_the_same_urls_for_every_server(state, monkeypatch):
    monkeypatch.delenv(sas.ENV, raising=False)
    a, b = engine.Engine(state), engine.Engine(state)
    try:
        url = sas.callback_url(sas.key(a), "http://x", "orders", "manual")
        assert url == sas.callback_url(sas.key(b), "http://x", "orders", "manual")
        assert sas.key(a) not in url.encode()
    finally:
        a.close()
        b.close()


def test_reads_from_worker_threads_while_the_owner_writes_and_commits_all_succeed(loop):
    """result() of a big loop reads in worker threads while the event loop's thread writes and
    group-commits (a batch in one round trip) on the same connection: neither ever finds the
    connection busy, whichever thread opened the store."""
    import threading

    stop, errors = threading.Event(), []

    def read():
        try:
            while not stop.is_set():
                assert len(loop.loop_summary("r", "loop", ["sq"])) == 2
                assert loop.steps_at("r", ["loop[4]/sq"])["loop[4]/sq"].outputs == BIG
                assert list(loop.loop_indexes("r", "loop", "sq", ("Failed",))) == [3]
                assert loop.get_run("r").status == "Running" and loop.get_step("r", "loopy").outputs
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    readers = [threading.Thread(target=read) for _ in range(4)]
    for t in readers:
        t.start()
    try:
        for i in range(300):
            loop.step_finished("r", f"other[{i}]/w", "w", "Compose", "Succeeded", attempts=1, inputs=None,
                               outputs=i, error=None, started=1.0, ended=2.0)
            if i % 3 == 0:
                loop.flush()
    finally:
        stop.set()
        for t in readers:
            t.join(30)
    assert errors == []
    assert len(list(loop.iter_steps("r", prefix="other"))) == 300


@pytest.mark.parametrize("hostile", ["\x00", "run0\x00", "%", "_", "\\", "'; --", "r" * 5000, "\ud800"])
def test_an_id_from_outside_finds_nothing_and_raises_nothing_but_no_run(store, hostile):
    from engine.errors import StoreError

    _runs(store)
    finish(store, "run0-abc", "a")
    if hostile in ("\ud800",):
        hostile = "\ud800".encode("utf-8", "surrogatepass").decode("latin-1")  # what a bad URL path decodes to
    with pytest.raises(StoreError, match="no run"):
        store.get_run(hostile)
    assert store.get_step("run0-abc", hostile) is None and store.find_run("orders", hostile) is None
    assert store.get_step(hostile, "a") is None


@pytest.mark.parametrize("page", [1000, 2])
def test_the_steps_inside_a_loop_come_back_whole_and_in_finishing_order_whether_or_not_they_fill_a_page(store, page):
    """iter_steps reads a small prefix through the primary key and pages a big one by seq: both
    ways give the same steps, on both backends (PostgreSQL's path sorts bytewise, as SQLite's)."""
    order = [f"loop[{i}]/x" for i in (3, 0, 11, 1, 2)] + ["loop/inner", "loop[10]", "loopy", "loop0", "l"]
    for path in order:
        finish(store, "r", path)
    expected = [p for p in order if p.startswith(("loop[", "loop/"))]
    assert [s.path for s in store.iter_steps("r", prefix="loop", page=page)] == expected
    assert [s.path for s in store.iter_steps("r", prefix="loop", after_seq=3, page=page)] == expected[3:]


def test_a_run_read_by_id_or_by_prefix_carries_its_flow_definition_stored_once(store):
    source = "actions:\n  a: {type: Compose, inputs: 1}\n"
    store.create_run({"id": "run-one", "flow": "f", "status": "Queued", "flow_hash": "h1", "definition": source})
    store.create_run({"id": "run-two", "flow": "f", "status": "Queued", "flow_hash": "h1", "definition": source})
    store.create_run({"id": "bare", "flow": "f", "status": "Queued"})
    assert store.get_run("run-one").definition == store.get_run("run-t").definition == source
    assert store.get_run("bare").definition is None and store.get_run("bare").flow_hash is None
    with pytest.raises(engine.FlowrunError, match="'run-' matches several runs; give more of the id"):
        store.get_run("run-")


def test_a_run_is_found_by_a_prefix_holding_like_wildcards_whatever_the_servers_string_syntax(store):
    """The LIKE escape character goes as a parameter: a PostgreSQL whose standard_conforming_strings
    is off (backslashes in literals are escapes there) still finds the run."""
    if store.backend == "postgresql":
        store.conn.execute("SET standard_conforming_strings = off")
    store.create_run({"id": "a_%\\b-1", "flow": "f", "status": "Queued"})
    store.create_run({"id": "axx-2", "flow": "f", "status": "Queued"})
    assert store.get_run("a_%\\").id == "a_%\\b-1"
    with pytest.raises(engine.FlowrunError, match="no run"):
        store.get_run("a_%%")


def test_get_runs_reads_runs_by_full_id_in_one_call_and_leaves_unknown_ids_out(state):
    store = open_store(state)
    try:
        for i in range(3):
            store.create_run({"id": f"run-{i}", "flow": "f", "status": "Queued", "payload": {"n": i}})
        store.flush()
        runs = store.get_runs(["run-0", "run-2", "run-", "nope"])
        assert {k: (r.status, r.payload) for k, r in runs.items()} == {"run-0": ("Queued", {"n": 0}),
                                                                       "run-2": ("Queued", {"n": 2})}
        assert store.get_runs([]) == {}
    finally:
        store.close()


HOSTILE = ["\x00", "r\x00", "a\x00b%", "%", "_", "\\", "%_\\", "r" + "x" * 100_000, "\ud800", "\udcff r",
           "'; DROP TABLE runs; --"]


@pytest.mark.parametrize("text", HOSTILE, ids=repr)
def test_text_from_outside_matches_nothing_in_any_read_and_never_raises_a_driver_error(loop, text):
    """Run ids, flow names, statuses and step paths come from URLs and command lines: a NUL
    (PostgreSQL text holds none), a lone surrogate (argv's undecodable bytes), LIKE wildcards,
    or a 'prefix' longer than a LIKE pattern may be: each reads as no such run, never as a
    driver's error, and a wildcard is no wildcard."""
    from engine.errors import StoreError

    with pytest.raises(StoreError, match="no run"):
        loop.get_run(text)
    assert loop.find_run(text, text) is None and loop.find_run("f", text) is None
    assert loop.list_runs(flow=text) == [] and loop.list_runs(status=text) == []
    assert loop.steps(text) == [] and list(loop.iter_steps(text)) == []
    assert list(loop.iter_steps("r", prefix=text)) == []
    assert loop.get_step("r", text) is None and loop.get_step(text, "loopy") is None
    assert loop.steps_at("r", [text]) == {} and loop.steps_at(text, ["loopy"]) == {}
    assert loop.get_run("r").id == "r"  # and the store still reads
