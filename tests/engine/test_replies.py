"""engine/replies.py: ``Engine.wait_for_reply`` in one process sees the reply another process
records for a run, woken by its NOTIFY (or, when LISTEN cannot be had, by the slow poll)."""
import time

import anyio
import pytest

import engine
from engine.replies import ReplyWatch
from tests.support import postgres

pytestmark = pytest.mark.skipif(postgres.skip_reason is not None, reason=postgres.skip_reason or "")

FLOW = """\
name: answer
triggers:
  hook: {type: Request, auth: {type: none}}
actions:
  reply: {type: Response, inputs: {statusCode: 202, body: ok}}
"""


@pytest.fixture
def pg_state():
    url, schema = postgres.postgres_url()
    yield url
    postgres.drop(schema)


def two_engines(url, flow_file):
    """(waiting, recording): two engines, as two processes would have, on one schema; a run
    committed Queued by the first."""
    waiting, recording = engine.Engine(url), engine.Engine(url)
    run_id = waiting.start(waiting.load(flow_file(FLOW)))
    return waiting, recording, run_id


async def reply_once_waited_for(waiting, recording, run_id, reply):
    """Record ``reply`` (committed, with its NOTIFY) once ``waiting`` waits for the run: it has
    read the run without a reply, so only a wake-up can show it the reply."""
    while (watch := waiting._reply_watch) is None or run_id not in watch._waiting:
        await anyio.sleep(0.005)
    await anyio.sleep(0.05)  # (so the read after the registration comes first: the wake-up is what is tested)
    recording.store.update_run(run_id, response=reply)


async def wait_and_reply(waiting, recording, run_id, reply, timeout):
    got = {}
    async with anyio.create_task_group() as tg:
        tg.start_soon(reply_once_waited_for, waiting, recording, run_id, reply)
        started = time.monotonic()
        got["run"] = await waiting.wait_for_reply(run_id, timeout=timeout)
        got["took"] = time.monotonic() - started
    return got


def test_a_reply_recorded_by_another_process_wakes_the_waiter_by_notify(pg_state, flow_file, monkeypatch):
    monkeypatch.setattr(engine.Engine, "REPLY_POLL", 120.0)  # the poll cannot be what wakes it
    waiting, recording, run_id = two_engines(pg_state, flow_file)
    reply = {"statusCode": 202, "headers": {}, "body": "ok"}
    try:
        got = anyio.run(wait_and_reply, waiting, recording, run_id, reply, 60)
        assert got["run"].response == reply
        assert got["took"] < 30
    finally:
        waiting.close()
        recording.close()


def test_a_run_that_ends_without_replying_ends_the_wait(pg_state, flow_file, monkeypatch):
    waiting, recording, run_id = two_engines(pg_state, flow_file)
    recording.fail_run(run_id, {"code": "Nope", "message": "could not run"})
    try:
        run = anyio.run(lambda: waiting.wait_for_reply(run_id, timeout=60))
        assert run.status == "Failed" and run.response is None
    finally:
        waiting.close()
        recording.close()


def test_without_listen_the_slow_poll_still_finds_the_reply_and_nothing_hangs(pg_state, flow_file, monkeypatch):
    monkeypatch.setattr(engine.Engine, "REPLY_POLL", 0.05)
    waiting, recording, run_id = two_engines(pg_state, flow_file)
    waiting._reply_watch = ReplyWatch("postgresql://127.0.0.1:1/nowhere")  # LISTEN fails: logged, not raised
    reply = {"statusCode": 202, "headers": {}, "body": "ok"}
    try:
        got = anyio.run(wait_and_reply, waiting, recording, run_id, reply, 30)
        assert got["run"].response == reply
    finally:
        waiting.close()
        recording.close()


def test_no_reply_within_the_timeout_gives_the_run_as_it_stands(pg_state, flow_file):
    waiting, recording, run_id = two_engines(pg_state, flow_file)
    try:
        run = anyio.run(lambda: waiting.wait_for_reply(run_id, timeout=0.2))
        assert run.status == "Queued" and run.response is None
    finally:
        waiting.close()
        recording.close()


def test_after_the_listen_connection_breaks_a_later_request_listens_again_and_is_woken_by_notify(
        pg_state, flow_file, monkeypatch):
    """A database restart (here: the LISTEN backend terminated) costs the waiters their NOTIFY
    only until the next request after ReplyWatch.RETRY: then replies wake them again at once,
    not only the slow poll."""
    import psycopg

    monkeypatch.setattr(engine.Engine, "REPLY_POLL", 120.0)  # the poll cannot be what wakes it
    monkeypatch.setattr(ReplyWatch, "RETRY", 0.0)
    waiting, recording, first = two_engines(pg_state, flow_file)
    second = waiting.start(waiting.load(flow_file(FLOW)))
    reply = {"statusCode": 202, "headers": {}, "body": "ok"}

    async def main():
        got = await wait_and_reply(waiting, recording, first, reply, 60)
        assert got["run"].response == reply and got["took"] < 30
        watch = waiting._reply_watch
        with psycopg.connect(pg_state, autocommit=True) as admin:
            assert admin.execute("SELECT pg_terminate_backend(%s)", (watch.backend_pid,)).fetchone()[0]
        with anyio.fail_after(30):
            while watch._thread.is_alive():  # it notices within its 1 s notifies() timeout
                await anyio.sleep(0.02)
        return await wait_and_reply(waiting, recording, second, reply, 60)
    try:
        got = anyio.run(main)
        assert got["run"].response == reply
        assert got["took"] < 30  # by NOTIFY on the new LISTEN, not the 120 s poll
    finally:
        waiting.close()
        recording.close()
