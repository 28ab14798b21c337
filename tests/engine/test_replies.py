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


def test_a_lost_listen_connection_is_opened_again_and_notify_still_wakes_the_waiter(pg_state, flow_file, monkeypatch):
    import os

    import psycopg

    monkeypatch.setattr(engine.Engine, "REPLY_POLL", 120.0)  # the poll cannot be what wakes it
    waiting, recording, run_id = two_engines(pg_state, flow_file)
    reply = {"statusCode": 202, "headers": {}, "body": "ok"}
    name = f"flowrun-replies-{os.getpid()}"
    channel = waiting.store.reply_channel  # this test's schema's own: no other test's watch
    find = "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND query = %s"

    async def cut_then_reply():
        while (watch := waiting._reply_watch) is None or run_id not in watch._waiting:
            await anyio.sleep(0.005)
        with psycopg.connect(pg_state, autocommit=True) as admin:
            [(old,)] = admin.execute(find, (name, f"LISTEN {channel}")).fetchall()
            admin.execute("SELECT pg_terminate_backend(%s)", (old,))
            with anyio.fail_after(30):  # the watch opens a new LISTEN connection
                while [r[0] for r in admin.execute(find, (name, f"LISTEN {channel}"))] in ([], [old]):
                    await anyio.sleep(0.02)
        await anyio.sleep(0.05)
        recording.store.update_run(run_id, response=reply)

    async def scenario():
        got = {}
        async with anyio.create_task_group() as tg:
            tg.start_soon(cut_then_reply)
            got["run"] = await waiting.wait_for_reply(run_id, timeout=60)
        return got

    try:
        assert anyio.run(scenario)["run"].response == reply
    finally:
        waiting.close()
        recording.close()
