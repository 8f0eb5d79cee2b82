"""Scale-out: two server processes (`gunicorn -k eventlet -w 1 --no-control-socket --bind 127.0.0.1:PORT 'webapp:create_app()'`, each
with its own inference worker) joined by one Redis through Flask-SocketIO's message queue (FER_MESSAGE_QUEUE),
as docs/classroom.md describes behind a sticky proxy. Clients on both are served, and a message
emitted through the queue (from a third process, as a teacher's script would) reaches the clients of
both servers, which shows that the eventlet servers' Redis listeners are green and working.

Needs Debian's redis-server (`apt-get install -y redis-server`) and the `redis` package; skips
cleanly without them. The test starts and stops its own redis-server on a free localhost port.
"""
from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time

import pytest

from harness.server import Client, free_port, gunicorn_cmd, server_env, start, stop, wait_healthy, wss_frames

pytestmark = pytest.mark.slow
REDIS = shutil.which("redis-server")


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    if REDIS is None:
        pytest.skip("redis-server not installed (apt-get install -y redis-server)")
    pytest.importorskip("redis", reason="the redis package is not installed (requirements.txt)")
    port = free_port()
    d = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen([REDIS, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(d), "--protected-mode", "yes"],
                            stdout=open(d / "redis.log", "wb"), stderr=subprocess.STDOUT)
    try:
        end = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            assert proc.poll() is None and time.monotonic() < end, (d / "redis.log").read_text()
            time.sleep(0.1)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def two_servers(redis_url, tiny_models, tmp_path_factory):
    d = tmp_path_factory.mktemp("scaleout")
    servers = []
    try:
        for i in range(2):
            port = free_port()
            log = d / f"server{i}.log"
            # the name clients use through the proxy (whose port differs from the servers'), and the proxy
            # trusted for the page's https origin: docs/classroom.md section 6
            proc = start(gunicorn_cmd(port), server_env(tiny_models, FER_MESSAGE_QUEUE=redis_url,
                                                        FER_ALLOWED_HOSTS="127.0.0.1", FER_TRUST_PROXY="1"), log)
            servers.append((port, proc, log))
        for port, proc, log in servers:
            wait_healthy(port, proc, log, timeout=180)
        yield servers
    finally:
        for _, proc, _ in servers:
            stop(proc)


def test_clients_on_both_servers_are_served(two_servers, astronaut_jpeg):
    clients = [Client(port) for port, _, _ in two_servers for _ in range(3)]
    failures = []

    def run(c):
        try:
            for _ in range(15):
                name, res = c.send(astronaut_jpeg, timeout=60)
                if name != "result" or len(res["faces"]) != 1:
                    failures.append(res)
        except Exception as e:  # noqa: BLE001
            failures.append(repr(e))

    threads = [threading.Thread(target=run, args=(c,)) for c in clients]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not failures, failures[:3]
        labels = {res["faces"][0]["label"] for c in clients for n, res in c.answers()}
        assert len(labels) == 1  # the same models on both servers: the same answer
    finally:
        for c in clients:
            c.close()
    import requests
    for port, _, _ in two_servers:  # each server counted its own clients' frames
        s = requests.get(f"http://127.0.0.1:{port}/admin/stats", timeout=5).json()
        assert s["frames"] >= 45 and s["worker"]["state"] == "ready"


def test_message_through_the_queue_reaches_clients_of_both_servers(two_servers, redis_url, astronaut_jpeg):
    from flask_socketio import SocketIO
    clients = [Client(port) for port, _, _ in two_servers]
    got = {i: [] for i in range(len(clients))}
    for i, c in enumerate(clients):
        c.sio.on("notice", (lambda data, i=i: got[i].append(data)))
    try:
        for c in clients:  # both connected and working
            assert c.send(astronaut_jpeg)[0] == "result"
        external = SocketIO(message_queue=redis_url, async_mode="threading")  # write-only, no app: an external process
        end = time.monotonic() + 20
        while not all(got.values()) and time.monotonic() < end:
            external.emit("notice", {"text": "five minutes left"})
            time.sleep(0.5)
        assert all(g and g[0] == {"text": "five minutes left"} for g in got.values()), got
        for c in clients:  # and the frames still flow
            assert c.send(astronaut_jpeg)[0] == "result"
    finally:
        for c in clients:
            c.close()
    for _, _, log in two_servers:
        text = log.read_bytes()
        assert b"Traceback" not in text, text.decode(errors="replace")[-3000:]


NGINX = shutil.which("nginx") or (shutil.which("nginx", path="/usr/sbin:/sbin"))


@pytest.mark.skipif(NGINX is None or not shutil.which("openssl"), reason="nginx or openssl not installed")
def test_through_the_sample_nginx_config(two_servers, tmp_path, astronaut_jpeg):
    """deploy/nginx.conf as shipped, only ports, certificate and log paths changed: it is valid, and
    clients reach the servers through it over wss:// (TLS, WebSocket upgrade, same-origin check with
    the forwarded headers); /admin through the proxy is remote (needs the secret)."""
    import requests
    from harness.server import ROOT
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    http_port, https_port = free_port(), free_port()
    (a, _, _), (b, _, _) = two_servers
    logs = [tmp_path / "error.log", tmp_path / "access.log"] + [log for _, _, log in two_servers]

    def diagnose() -> str:  # what the proxy and both servers said, for a failure's message
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-1500:]}" for p in logs if p.exists())

    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    for old, new in (("listen 80;", f"listen 127.0.0.1:{http_port};"),
                     ("listen 443 ssl;", f"listen 127.0.0.1:{https_port} ssl;"),
                     ("server 127.0.0.1:8001;", f"server 127.0.0.1:{a};"),
                     ("server 127.0.0.1:8002;", f"server 127.0.0.1:{b};"),
                     ("/etc/ssl/fer/cert.pem", str(cert)), ("/etc/ssl/fer/key.pem", str(key)),
                     ("server_tokens off;", f"server_tokens off;\n    access_log {tmp_path}/access.log;")):
        assert old in conf, old
        conf = conf.replace(old, new)
    path = tmp_path / "nginx.conf"
    path.write_text(conf)
    base = ["-c", str(path), "-p", str(tmp_path), "-e", str(tmp_path / "error.log"),
            "-g", f"pid {tmp_path}/nginx.pid; daemon off;"]
    t = subprocess.run([NGINX, "-t", *base], capture_output=True, text=True)
    assert t.returncode == 0, t.stderr
    proc = subprocess.Popen([NGINX, *base], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"https://127.0.0.1:{https_port}"
        end = time.monotonic() + 20
        while True:
            try:
                if requests.get(url + "/healthz", verify=str(cert), timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert proc.poll() is None and time.monotonic() < end, (tmp_path / "error.log").read_text()
            time.sleep(0.2)
        assert requests.get(f"http://127.0.0.1:{http_port}/", allow_redirects=False, timeout=5).status_code == 301
        assert requests.get(url + "/admin", verify=str(cert), timeout=5).status_code == 403  # remote, no secret set
        # Origin: https://127.0.0.1:PORT, what the page would send
        try:
            got = wss_frames(url, astronaut_jpeg, n=3, timeout=30)
        except Exception as e:  # noqa: BLE001 - say what the proxy and the servers saw
            raise AssertionError(f"{e!r}\n{diagnose()}") from e
        assert all(name == "result" and len(r["faces"]) == 1 for name, r in got), (got, diagnose())
        _ws_origin_check(f"wss://127.0.0.1:{https_port}/socket.io/?EIO=4&transport=websocket", url)
    finally:
        proc.terminate()
        proc.wait(10)


def _ws_origin_check(ws_url: str, own_origin: str) -> None:
    """A WebSocket handshake from the server's own origin opens; one from another origin gets 400."""
    import ssl
    import websocket
    opts = {"sslopt": {"cert_reqs": ssl.CERT_NONE}} if ws_url.startswith("wss") else {}
    ws = websocket.create_connection(ws_url, origin=own_origin, timeout=10, **opts)
    assert ws.recv().startswith("0")
    ws.close()
    with pytest.raises(websocket.WebSocketBadStatusException) as e:
        websocket.create_connection(ws_url, origin="https://evil.example", timeout=10, **opts)
    assert e.value.status_code == 400
