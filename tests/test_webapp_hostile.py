"""Hostile clients (issue #13), each item's regression test: raw sockets and raw Engine.IO/Socket.IO
packets against both documented servers (`gunicorn -k eventlet -w 1` and `python -m webapp`) on
127.0.0.1, and the Flask app in-process where HTTP is enough. Every attack is bounded in count and
time; tests/hostile_clients.py has the raw clients (bench/bench_hostile.py uses them too)."""
from __future__ import annotations

import base64
import logging
import os
import re
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

import hostile_clients as hc
from webapp_testutil import Client, dev_cmd, free_port, gunicorn_cmd, server_env, start, stop, wait_healthy

pytestmark = pytest.mark.slow
TIMESTAMP = re.compile(rb"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} |\[\d{4}-\d\d-\d\d )")


@pytest.fixture(scope="module")
def servers(tiny_models, tmp_path_factory):
    """{'gunicorn': (port, proc, log), 'dev': (...)}, started together (each loads the models)."""
    d = tmp_path_factory.mktemp("hostile")
    out = {}
    try:
        for name, cmd in (("gunicorn", gunicorn_cmd), ("dev", lambda p: dev_cmd(p, tiny_models))):
            port = free_port()
            log = d / f"{name}.log"
            out[name] = (port, start(cmd(port), server_env(tiny_models), log), log)
        for port, proc, log in out.values():
            wait_healthy(port, proc, log, timeout=180)
        yield out
    finally:
        for _, proc, _ in out.values():
            stop(proc)


def _served(port: int, jpeg: bytes) -> None:
    """A well-behaved client gets its result, and /healthz answers 200."""
    c = Client(port)
    try:
        name, res = c.send(jpeg)
        assert name == "result" and len(res["faces"]) == 1, res
    finally:
        c.close()
    assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 200


def _log_lines(log) -> list[bytes]:
    return log.read_bytes().splitlines()


# -- item 8 (first: Engine.IO logs a bad session id as an ERROR the first time only) ----------------

@pytest.mark.parametrize("name", ["gunicorn", "dev"])
def test_client_text_in_the_log_is_escaped_and_bounded(servers, name):
    port, _, log = servers[name]
    status, _ = hc.http_request(port, "GET", "/socket.io/?EIO=4&transport=polling&sid=abc%0AINJECTED-LINE%0D"
                                + "x" * 3000)
    assert status == 400
    time.sleep(0.5)
    lines = _log_lines(log)
    assert not any(l.startswith(b"INJECTED-LINE") for l in lines), lines[-5:]
    assert any(b"abc\\nINJECTED-LINE\\r" in l for l in lines), lines[-5:]  # logged, on one line
    assert max(len(l) for l in lines) < 3000


# -- item 1: oversize long-polling bodies -----------------------------------------------------------

@pytest.mark.parametrize("name", ["gunicorn", "dev"])
def test_polling_post_with_an_invalid_engineio_packet_is_answered(servers, name):
    """Engine.IO closes the session on an unknown packet type ('7'), the same wait as for an oversize
    body: the POST must still be answered."""
    port, _, _ = servers[name]
    sid = hc.polling_session(port)
    status, _ = hc.http_request(port, "POST", f"/socket.io/?EIO=4&transport=polling&sid={sid}", b"7",
                                headers={"Content-Type": "text/plain"}, timeout=10)
    assert status == 400


# -- item 2: attachment counts ----------------------------------------------------------------------

@pytest.mark.parametrize("name", ["gunicorn", "dev"])
def test_attachment_flood_is_refused(servers, name, astronaut_jpeg):
    """A frame declaring 5,999,999 attachments, then 1 MB binary messages: the connection is closed
    after the first packet and the server buffers nothing (before: 300 MB in 2 s, no error)."""
    port, proc, _ = servers[name]
    pid = hc.web_pid(proc.pid)
    rss0 = hc.rss_mb(pid)
    sent, closed = hc.attachment_flood(port, messages=60, size=1_000_000, seconds=20)
    assert closed
    assert hc.rss_mb(pid) - rss0 < 40, (sent, hc.rss_mb(pid), rss0)
    _served(port, astronaut_jpeg)


# -- item 3: invalid packets ------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["gunicorn", "dev"])
def test_invalid_packets_close_the_connection_with_one_log_line(servers, name, astronaut_jpeg):
    port, _, log = servers[name]
    n0 = len(_log_lines(log))
    for case in hc.INVALID_PACKETS:
        for _ in range(6):  # 30 refused connections in all
            assert hc.invalid_packet(port, case), case
    time.sleep(1.0)
    new = _log_lines(log)[n0:]
    refused = [l for l in new if b"not valid Socket.IO" in l]
    assert 1 <= len(refused) <= 5, refused  # one line each, then rate-limited
    assert not any(b"handler error" in l for l in new), new[:5]
    _served(port, astronaut_jpeg)
    assert requests.get(f"http://127.0.0.1:{port}/admin/stats", timeout=10).json()["errors"].get("bad_packet", 0) >= 30


# -- item 6: liveness -------------------------------------------------------------------------------

def test_a_batch_written_into_a_killed_worker_fails_instead_of_hanging(tmp_path):
    """Under eventlet, writing a batch larger than the pipe into a worker that is then killed: the
    write must fail (the frames get 'worker_crashed'). eventlet's green os.write retried EPIPE for ever,
    so the dispatcher never learnt of the crash."""
    import subprocess
    import sys
    import textwrap
    from webapp_testutil import ROOT
    script = tmp_path / "pipe.py"
    script.write_text(textwrap.dedent("""
        import eventlet; eventlet.monkey_patch()
        import os, signal, subprocess, sys, threading, time
        sys.path.insert(0, sys.argv[1])
        from webapp import wire
        p = subprocess.Popen(["sleep", "60"], stdin=subprocess.PIPE)
        os.kill(p.pid, signal.SIGSTOP)
        out = []
        def write():
            try:
                wire.write_message(p.stdin, {"type": "batch"}, [b"x" * 300_000])
                out.append("written")
            except OSError as e:
                out.append(type(e).__name__)
        t = threading.Thread(target=write)
        t.start()
        time.sleep(0.5)
        p.kill(); p.wait()
        t.join(3)
        print("RESULT", out, t.is_alive(), flush=True)
        os._exit(0)
    """))
    out = subprocess.run([sys.executable, "-W", "ignore", str(script), str(ROOT)], capture_output=True, text=True,
                         timeout=60)
    assert "RESULT ['BrokenPipeError'] False" in out.stdout, (out.stdout, out.stderr[-2000:])
