"""Hostile clients on raw sockets and raw Engine.IO/Socket.IO packets, for tests/test_webapp_hostile.py
and bench/bench_hostile.py. Loopback only: every function takes a port on 127.0.0.1, and every loop
here is bounded by a count and a time limit."""
from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

HOST = "127.0.0.1"
TCP_CLOSE_WAIT = "08"  # /proc/net/tcp's state code


def http_request(port: int, method: str, target: str, body: bytes = b"", headers: dict | None = None,
                 timeout: float = 10.0, send_body: bool = True) -> tuple[int | None, bytes]:
    """One HTTP/1.1 request on a fresh connection: (status or None when no answer came in time, raw
    answer). ``send_body=False`` declares the headers (Content-Length included) and sends no body."""
    hdrs = {"Host": f"{HOST}:{port}", "Connection": "close"}
    if body or method == "POST":
        hdrs["Content-Length"] = str(len(body))
    hdrs.update(headers or {})
    head = f"{method} {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        s.sendall(head.encode("latin-1") + (body if send_body else b""))
        return read_answer(s, timeout)


def read_answer(s: socket.socket, timeout: float) -> tuple[int | None, bytes]:
    end = time.monotonic() + timeout
    data = b""
    while time.monotonic() < end:
        s.settimeout(max(0.05, end - time.monotonic()))
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            break
        except OSError:
            break
        if not chunk:
            break
        data += chunk
        if b"\r\n\r\n" in data:
            head, _, rest = data.partition(b"\r\n\r\n")
            n = next((int(l.split(b":", 1)[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")), None)
            if n is not None and len(rest) >= n:
                break
    if not data.startswith(b"HTTP/"):
        return None, data
    return int(data.split(b" ", 2)[1]), data


def polling_session(port: int, timeout: float = 10.0) -> str:
    """A long-polling Engine.IO session with the default namespace connected; returns its sid."""
    status, raw = http_request(port, "GET", "/socket.io/?EIO=4&transport=polling", timeout=timeout)
    assert status == 200, raw[:300]
    body = raw.partition(b"\r\n\r\n")[2]
    sid = json.loads(body[body.index(b"{"):body.index(b"}") + 1])["sid"]
    status, raw = http_request(port, "POST", f"/socket.io/?EIO=4&transport=polling&sid={sid}", b"40",
                               headers={"Content-Type": "text/plain;charset=UTF-8"}, timeout=timeout)
    assert status == 200, raw[:300]
    return sid


def oversize_post(port: int, declared: int = 3_000_000, timeout: float = 10.0) -> int | None:
    """Issue #13, item 1: a POST on a live polling session declaring ``declared`` bytes and sending
    none; returns the status the server answered within ``timeout`` (None: no answer)."""
    sid = polling_session(port, timeout)
    status, _ = http_request(port, "POST", f"/socket.io/?EIO=4&transport=polling&sid={sid}",
                             headers={"Content-Length": str(declared), "Content-Type": "text/plain"},
                             timeout=timeout, send_body=False)
    return status


def close_wait(port: int) -> int:
    """Sockets of the server on ``port`` left in CLOSE_WAIT: the peer has gone, the server never
    closed its side (a handler still parked on that connection)."""
    n = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if int(f[1].rsplit(":", 1)[1], 16) == port and f[3] == TCP_CLOSE_WAIT:
                n += 1
    return n


def ws_connect(port: int, timeout: float = 10.0, **kw):
    """A raw WebSocket, Engine.IO opened and the default namespace connected (the 'hello' read)."""
    import websocket
    ws = websocket.create_connection(f"ws://{HOST}:{port}/socket.io/?EIO=4&transport=websocket", timeout=timeout, **kw)
    assert ws.recv().startswith("0")
    ws.send("40")
    while not str(ws.recv()).startswith("40"):  # the server greets ('hello') before or after
        pass
    return ws


def closed_within(ws, seconds: float) -> bool:
    """True when the server closed ``ws`` within ``seconds`` (pings answered meanwhile)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        ws.settimeout(max(0.05, end - time.monotonic()))
        try:
            msg = ws.recv()
        except Exception as e:  # noqa: BLE001 - closed (or timed out: checked below)
            return type(e).__name__ not in ("WebSocketTimeoutException", "timeout", "TimeoutError")
        if msg == "2":
            ws.send("3")
        elif msg in ("", b"", None) or msg == "1":  # an empty read or Engine.IO close
            return True
    return False


def children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def web_pid(server_pid: int) -> int:
    """The process that serves HTTP: gunicorn's worker (the arbiter's child that is not the inference
    worker), or the dev server itself."""
    for c in children(server_pid):
        try:
            cmd = Path(f"/proc/{c}/cmdline").read_bytes()
        except OSError:
            continue
        if b"webapp.worker" not in cmd:
            return c
    return server_pid


INVALID_PACKETS = {  # each ends its connection
    "bad_json": ['42["frame"'],
    "missing_attachment": ['451-["frame",{"_placeholder":true,"num":7}]', b"\xff\xd8abc"],
    "deep_json": ["42" + "[" * 100_000 + "]" * 100_000],
    "binary_without_header": [b"\x00\x01"],
    "binary_on_another_event": ['451-["photo",{"_placeholder":true,"num":0}]', b"abc"],
}


def invalid_packet(port: int, case: str, seconds: float = 10.0) -> bool:
    """Send one of ``INVALID_PACKETS`` on a new connection; True if the server closed it in time."""
    ws = ws_connect(port)
    try:
        for m in INVALID_PACKETS[case]:
            (ws.send_binary if isinstance(m, bytes) else ws.send)(m)
        return closed_within(ws, seconds)
    finally:
        ws.close()


def attachment_flood(port: int, declared: int = 5_999_999, messages: int = 100, size: int = 1_000_000,
                     seconds: float = 20.0) -> tuple[int, bool]:
    """Issue #13, item 2: a `frame` event declaring ``declared`` attachments, then up to ``messages``
    binary messages of ``size`` bytes within ``seconds``. Returns (bytes sent, closed by the server)."""
    ws = ws_connect(port)
    sent, closed = 0, False
    end = time.monotonic() + seconds
    blob = os.urandom(size)
    try:
        ws.send(f'45{declared}-["frame",{{"_placeholder":true,"num":0}}]')
        for _ in range(messages):
            if time.monotonic() > end:
                break
            try:
                ws.send_binary(blob)
            except Exception:  # noqa: BLE001 - the server closed the connection
                closed = True
                break
            sent += size
        closed = closed or closed_within(ws, 3.0)
    finally:
        ws.close()
    return sent, closed


def stalled_bodies(port: int, sessions: int = 100, declared: int = 2_000_000, sent: int = 1_900_000,
                   timeout: float = 30.0) -> list[int | None]:
    """Long-polling POSTs, one per polling session (``sessions`` of them, at once), each declaring
    ``declared`` bytes, sending ``sent`` of them, then nothing: the server answers each once its body
    deadline passes. Returns each POST's status (None: no answer within ``timeout``)."""
    from concurrent.futures import ThreadPoolExecutor
    sids = [polling_session(port) for _ in range(sessions)]
    body = b"4" + b"x" * (sent - 1)  # an Engine.IO message packet, cut short

    def one(sid: str) -> int | None:
        head = (f"POST /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
                f"Content-Type: text/plain\r\nContent-Length: {declared}\r\n\r\n")
        with socket.create_connection((HOST, port), timeout=timeout) as s:
            s.sendall(head.encode("latin-1") + body)
            return read_answer(s, timeout)[0]

    with ThreadPoolExecutor(sessions) as pool:
        return list(pool.map(one, sids))
