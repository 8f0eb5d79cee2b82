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

from webapp_testutil import Client, dev_cmd, free_port, gunicorn_cmd, server_env, start, stop, wait_healthy

pytestmark = pytest.mark.slow
TIMESTAMP = re.compile(rb"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} |\[\d{4}-\d\d-\d\d )")


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
