"""The deployment commands themselves, as subprocesses on a free localhost port:
`gunicorn -k eventlet -w 1 --no-control-socket --bind 127.0.0.1:PORT 'webapp:create_app()'` (the shared server,
harness.server.gunicorn_cmd) and `python -m webapp` (local),
driven by python-socketio clients over a real WebSocket."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time

import pytest
import requests

from harness.server import (ROOT, Client, dev_cmd, free_port, grey_jpeg, gunicorn_cmd, server_env, start, stop, wait_gone,
                             wait_healthy, wss_frames)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def gunicorn(tiny_models, tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("gunicorn") / "server.log"
    proc = start(gunicorn_cmd(port), server_env(tiny_models), log)
    try:
        health = wait_healthy(port, proc, log)
        yield port, health, proc, log
    finally:
        stop(proc)


def test_round_trip(gunicorn, astronaut_jpeg):
    port, health, _, _ = gunicorn
    c = Client(port)
    try:
        hello = c.events[0]
        assert hello[0] == "hello" and hello[1]["labels"] == health["labels"]
        name, res = c.send(astronaut_jpeg)
        assert name == "result", res
        (face,) = res["faces"]
        assert face["label"] in health["labels"] and sorted(face["members"]) == sorted(health["members"])
        assert abs(sum(face["probabilities"].values()) - 1) < 1e-3
        x, y, w, h = face["box"]
        assert x >= 0 and y >= 0 and x + w <= res["width"] and y + h <= res["height"]
        name, res = c.send(grey_jpeg())
        assert name == "result" and res["faces"] == []
    finally:
        c.close()


def test_busy_and_size_limits(gunicorn, astronaut_jpeg):
    port = gunicorn[0]
    c, other = Client(port), Client(port)
    try:
        # two frames back to back: the second arrives while the first is in flight
        c.sio.emit("frame", astronaut_jpeg)
        c.sio.emit("frame", astronaut_jpeg)
        got = c.wait_answers(2)
        assert sorted(n for n, _ in got) == ["error", "result"], got
        assert next(d for n, d in got if n == "error")["code"] == "busy"
        # over our limit but within the transport's: a polite error, the connection stays
        name, err = c.send(astronaut_jpeg + b"\0" * 1_200_000)
        assert name == "error" and err["code"] == "too_large"
        assert c.send(astronaut_jpeg)[0] == "result"
        # far over the transport's limit: engine.io drops that connection, and only that one
        big = Client(port)
        big.sio.emit("frame", b"\0" * 3_000_000)
        end = time.monotonic() + 15
        while big.sio.connected and time.monotonic() < end:
            time.sleep(0.1)
        assert not big.sio.connected
        assert other.send(astronaut_jpeg)[0] == "result"
        assert c.send(astronaut_jpeg)[0] == "result"
    finally:
        c.close()
        other.close()


def test_concurrent_clients_all_answered(gunicorn, astronaut_jpeg):
    """5 clients x 40 frames, each client one frame in flight (paced under the per-client cap):
    every frame gets its result, and the worker batched frames of different clients together."""
    port = gunicorn[0]
    n_clients, n_frames = 5, 40
    clients = [Client(port) for _ in range(n_clients)]
    failures = []

    def run(c):
        try:
            for _ in range(n_frames):
                t0 = time.monotonic()
                name, res = c.send(astronaut_jpeg, timeout=60)
                if name != "result" or len(res["faces"]) != 1:
                    failures.append(res)
                time.sleep(max(0.0, 1 / 25 - (time.monotonic() - t0)))
        except Exception as e:  # noqa: BLE001
            failures.append(repr(e))

    threads = [threading.Thread(target=run, args=(c,)) for c in clients]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(240)
    elapsed = time.monotonic() - t0
    try:
        assert not failures, failures[:5]
        assert all(len(c.answers()) == n_frames for c in clients)
        stats = requests.get(f"http://127.0.0.1:{port}/admin/stats", timeout=5).json()
        assert stats["clients"] >= n_clients
        assert stats["frames"] >= n_clients * n_frames
        assert stats["worker"]["mean_batch"] > 1.0, stats["worker"]
        print(f"\n{n_clients}x{n_frames} frames in {elapsed:.1f} s; latency {stats['latency_ms']}, "
              f"mean batch {stats['worker']['mean_batch']}")
    finally:
        for c in clients:
            c.close()


def test_flooding_client_is_disconnected_others_are_not(gunicorn, astronaut_jpeg):
    """A client that ignores 'one frame in flight' and floods: 'busy' errors, then 'abuse' and a
    disconnect; a well-behaved client is served before, during and after."""
    port = gunicorn[0]
    good, flood = Client(port), Client(port)
    try:
        assert good.send(astronaut_jpeg)[0] == "result"
        for _ in range(200):
            if not flood.sio.connected:
                break
            try:
                flood.sio.emit("frame", astronaut_jpeg)
            except Exception:  # noqa: BLE001 - the server closed it mid-flood
                break
        end = time.monotonic() + 20
        while flood.sio.connected and time.monotonic() < end:
            time.sleep(0.05)
        assert not flood.sio.connected
        # 'abuse' was the server's last word, but handlers run in threads: wait for it to be recorded
        codes = lambda answers: [d["code"] for n, d in answers if n == "error"]  # noqa: E731
        assert flood.wait_for(lambda a: "abuse" in codes(a)), codes(flood.answers())[-5:]
        assert "busy" in codes(flood.answers()) and codes(flood.answers()).count("abuse") == 1
        assert good.send(astronaut_jpeg)[0] == "result"
        stats = requests.get(f"http://127.0.0.1:{port}/admin/stats", timeout=5).json()
        assert stats["errors"].get("abuse", 0) >= 1
    finally:
        good.close()
        flood.close()


def test_foreign_origin_is_refused(gunicorn, astronaut_jpeg):
    """CORS: same origin only by default, for the WebSocket transport too."""
    import websocket
    port = gunicorn[0]
    url = f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket"
    ws = websocket.create_connection(url, origin=f"http://127.0.0.1:{port}", timeout=10)  # the page's own origin
    assert ws.recv().startswith("0")
    ws.close()
    for origin in ("https://evil.example", f"http://127.0.0.1:{port + 1}", f"https://127.0.0.1:{port}"):
        with pytest.raises(websocket.WebSocketBadStatusException) as e:
            websocket.create_connection(url, origin=origin, timeout=10)
        assert e.value.status_code == 400
    ok = Client(port)
    try:
        assert ok.send(astronaut_jpeg)[0] == "result"
    finally:
        ok.close()


HOSTILE_PACKETS = {  # raw Socket.IO packets over a raw WebSocket, after the namespace connect ("40")
    "placeholder_out_of_range": ['451-["frame",{"_placeholder":true,"num":7}]', b"\xff\xd8abc"],
    "placeholder_not_int": ['451-["frame",{"_placeholder":true,"num":"x"}]', b"\xff\xd8abc"],
    "huge_attachment_count": ['459999999-["frame",{"_placeholder":true,"num":0}]', b"abc", b"def"],
    "bad_json": ['42["frame"'],
    "deep_json": ["42" + "[" * 100_000 + "]" * 100_000],
    "deep_json_arg": ['42["frame",' + "[" * 5000 + "]" * 5000 + "]"],
    "binary_without_header": [b"\x00\x01\x02"],
    "unknown_namespace": ['42/nonexistent,["frame"]'],
    "connect_other_namespace": ["40/admin,"],
    "ack_junk": ['43["x"]', '431["x"]'],
    "disconnect_then_frame": ["41", '42["frame"]'],
    "garbage_text": ["4zzz", "9", "42", "42[]", "42[1]", "42[null]", '42{"a":1}', '42"frame"'],
    "empty_text": [""],
    "binary_event_then_text": ['451-["frame",{"_placeholder":true,"num":0}]', '42["frame"]'],
    "engineio_noise": ["2", "3", "5", "6", "1"],
    "over_the_transport_limit": ["42" + "x" * 2_100_000],
}


def test_hostile_packets_end_only_their_connection(gunicorn, astronaut_jpeg):
    """Malformed Socket.IO/Engine.IO packets, each on its own raw WebSocket: at worst that connection
    is closed; a well-behaved client keeps getting the same answer, and the log carries no traceback."""
    import websocket
    port, _, _, log = gunicorn
    good = Client(port)
    try:
        ref = good.send(astronaut_jpeg)[1]["faces"]
        url = f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket"
        for name, msgs in HOSTILE_PACKETS.items():
            ws = websocket.create_connection(url, timeout=10)
            try:
                assert ws.recv().startswith("0")  # Engine.IO open
                ws.send("40")
                assert ws.recv().startswith("40")
                for m in msgs:
                    (ws.send_binary if isinstance(m, bytes) else ws.send)(m)
                ws.settimeout(0.5)
                while ws.recv():
                    pass
            except Exception:  # noqa: BLE001 - closed by the server, or nothing more to read
                pass
            finally:
                ws.close()
            name_, res = good.send(astronaut_jpeg)
            assert name_ == "result" and res["faces"] == ref, (name, res)
        assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
    finally:
        good.close()
    text = log.read_bytes()
    assert b"Traceback" not in text
    assert b"abc" not in text and b"x" * 100 not in text


def test_log_has_no_frame_data_and_shutdown_is_clean(gunicorn, astronaut_jpeg):
    port, _, proc, log = gunicorn
    worker_pid = requests.get(f"http://127.0.0.1:{port}/admin/stats", timeout=5).json()["worker"]["pid"]
    assert stop(proc) == 0
    text = log.read_bytes()
    assert astronaut_jpeg[1000:1064] not in text
    assert b"Traceback" not in text, text.decode(errors="replace")[-3000:]
    assert wait_gone(worker_pid, 10), f"inference worker {worker_pid} outlived the server"


def test_dev_server(tiny_models, tmp_path, astronaut_jpeg):
    """`python -m webapp` (eventlet, same stack as production): health, a round trip, the pages; a
    second signal right after the first (as `make run` passes its SIGTERM on) and a third while it
    stops (Ctrl-C pressed again) let the stop finish, without a traceback."""
    import signal
    port = free_port()
    log = tmp_path / "dev.log"
    proc = start(dev_cmd(port, tiny_models), server_env(tiny_models), log)
    try:
        wait_healthy(port, proc, log)
        c = Client(port)
        try:
            name, res = c.send(astronaut_jpeg)
            assert name == "result" and len(res["faces"]) == 1
        finally:
            c.close()
        base = f"http://127.0.0.1:{port}"
        assert "never stored" in requests.get(base + "/", timeout=5).text
        assert requests.get(base + "/static/vendor/socket.io.min.js", timeout=5).status_code == 200
        assert requests.get(base + "/admin", timeout=5).status_code == 200  # localhost
        os.killpg(proc.pid, signal.SIGTERM)
        os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while b"shutting down" not in log.read_bytes() and time.monotonic() < deadline:
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGINT)  # while it stops
    finally:
        assert stop(proc) == 0
    text = log.read_text()
    assert "Traceback" not in text and "already stopping" in text and "shut down in" in text, text[-3000:]


def _self_signed(tmp_path):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return key, cert


def _wait_https_healthy(proc, port, cert, log, timeout):
    """Until /healthz over HTTPS (trusting ``cert``) answers 200; fails with the server's log."""
    end = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            if requests.get(f"https://127.0.0.1:{port}/healthz", verify=str(cert), timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        assert time.monotonic() < end, log.read_text()[-3000:]
        time.sleep(0.3)


@pytest.mark.skipif(not shutil.which("openssl"), reason="openssl not installed")
def test_gunicorn_https(tiny_models, tmp_path, astronaut_jpeg):
    """The shared-server command with --certfile/--keyfile (docs/classroom.md), self-signed: the
    health check, the page and a frame over wss://."""
    key, cert = _self_signed(tmp_path)
    port = free_port()
    log = tmp_path / "gunicorn-tls.log"
    proc = start(gunicorn_cmd(port) + ["--certfile", str(cert), "--keyfile", str(key)], server_env(tiny_models), log)
    try:
        _wait_https_healthy(proc, port, cert, log, 120)
        assert "never stored" in requests.get(f"https://127.0.0.1:{port}/", verify=str(cert), timeout=5).text
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(f"https://127.0.0.1:{port}/healthz", timeout=5)  # not trusted without the cert
        got = wss_frames(f"https://127.0.0.1:{port}", astronaut_jpeg)
        assert got[0][0] == "result" and len(got[0][1]["faces"]) == 1, (got, log.read_text()[-2000:])
    finally:
        assert stop(proc) == 0
    assert b"Traceback" not in log.read_bytes()


@pytest.mark.skipif(not shutil.which("openssl"), reason="openssl not installed")
def test_dev_server_https(tiny_models, tmp_path, astronaut_jpeg):
    """The documented HTTPS option of `python -m webapp` (--certfile/--keyfile), self-signed."""
    key, cert = _self_signed(tmp_path)
    port = free_port()
    log = tmp_path / "tls.log"
    proc = start(dev_cmd(port, tiny_models) + ["--certfile", str(cert), "--keyfile", str(key)],
                 server_env(tiny_models), log)
    try:
        _wait_https_healthy(proc, port, cert, log, 60)
        got = wss_frames(f"https://127.0.0.1:{port}", astronaut_jpeg)
        assert got[0][0] == "result" and len(got[0][1]["faces"]) == 1, got
    finally:
        assert stop(proc) == 0


def test_a_second_stop_signal_does_not_cut_the_stop_short(tmp_path):
    """Two signals before the main greenlet has begun to stop (`make run` passes its own SIGTERM on to
    the server, just after the group's): one KeyboardInterrupt reaches the main loop, and the stop
    that follows is not interrupted by the second."""
    script = tmp_path / "twice.py"
    script.write_text(textwrap.dedent("""
        import signal, sys
        sys.path.insert(0, sys.argv[1])
        import webapp.__main__ as m   # monkey-patches, as the real entry point does
        import eventlet, greenlet
        m._MAIN = greenlet.getcurrent()
        m._stop(signal.SIGTERM, None)
        m._stop(signal.SIGTERM, None)
        try:
            eventlet.sleep(10)
            print("still serving", flush=True)
        except KeyboardInterrupt:
            try:
                eventlet.sleep(0.5)   # the stop
                print("stopped once", flush=True)
            except KeyboardInterrupt:
                print("stop cut short", flush=True)
    """))
    out = subprocess.run([sys.executable, str(script), str(ROOT)], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "stopped once", (out.stdout, out.stderr[-2000:])
    assert "already stopping" in out.stderr


def test_sigterm_stops_the_dev_server_from_any_greenlet(tmp_path):
    """The SIGTERM handler of `python -m webapp` must end the main loop even when the signal lands
    while another greenlet runs (seen in this suite: a Socket.IO disconnect handler caught it and the
    server went on serving)."""
    script = tmp_path / "sig.py"
    script.write_text(textwrap.dedent("""
        import os, signal, sys
        sys.path.insert(0, sys.argv[1])
        import webapp.__main__ as m   # monkey-patches, as the real entry point does
        import eventlet, greenlet
        m._MAIN = greenlet.getcurrent()
        signal.signal(signal.SIGTERM, m._stop)
        def request():
            try:
                os.kill(os.getpid(), signal.SIGTERM)  # the handler runs here, in this greenlet
                sum(range(1000))
                eventlet.sleep(0)
            except KeyboardInterrupt:
                print("caught by the request greenlet", flush=True)
        eventlet.spawn(request)
        try:
            eventlet.sleep(10)
            print("still serving", flush=True)
        except KeyboardInterrupt:
            print("main loop stopped", flush=True)
    """))
    out = subprocess.run([sys.executable, str(script), str(ROOT)], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "main loop stopped", (out.stdout, out.stderr[-2000:])
