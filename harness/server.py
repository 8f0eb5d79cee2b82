"""Servers started the documented way and clients that talk to them: for tests/ and bench/."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
GUNICORN = str(Path(sys.executable).with_name("gunicorn"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_env(models_dir, **extra) -> dict:
    env = dict(os.environ, FER_MODELS=str(models_dir), TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    env.update({k: str(v) for k, v in extra.items()})
    return env


def start(cmd: list[str], env: dict, log_path: Path) -> subprocess.Popen:
    """A server in its own process group (so stopping it stops its inference worker too)."""
    log = open(log_path, "wb")
    try:
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    finally:
        log.close()


# The shared server's command (docs/webapp.md, "Shared server"), the one the tests and benchmarks
# start; every document and docstring spells it so (tests/test_docs.py). One worker: Flask-SocketIO
# needs all of a client's requests in one process. No control socket: the app does not use it, and
# gunicorn 25.3 starting it late (after a SIGTERM had come) sometimes kept the arbiter from exiting.
GUNICORN_OPTIONS = ("-k", "eventlet", "-w", "1", "--no-control-socket")
APP = "webapp:create_app()"


def gunicorn_cmd(port: int, host: str = "127.0.0.1") -> list[str]:
    return [GUNICORN, *GUNICORN_OPTIONS, "--bind", f"{host}:{port}", APP]


def dev_cmd(port: int, models_dir) -> list[str]:
    return [PY, "-m", "webapp", "--port", str(port), "--models", str(models_dir)]


def wait_healthy(port: int, proc: subprocess.Popen, log_path: Path, timeout: float = 120.0) -> dict:
    import requests
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}:\n{Path(log_path).read_text()[-3000:]}")
        try:
            r = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
            if r.status_code == 200:
                return r.json()
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise AssertionError(f"/healthz not 200 within {timeout} s:\n{Path(log_path).read_text()[-3000:]}")


def stop(proc: subprocess.Popen, timeout: float = 30.0) -> int:
    """SIGTERM to the server's process group (gunicorn's arbiter, its worker, the inference worker)."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    return proc.returncode


def wait_gone(pid: int, timeout: float) -> bool:
    """True once process ``pid`` no longer exists (within ``timeout`` seconds)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


class Client:
    """A python-socketio client that records 'result', 'error' and 'hello' events in order."""

    def __init__(self, port: int, transports=("websocket",)):
        import socketio
        self.sio = socketio.Client(reconnection=False)
        self.events: list[tuple[str, object]] = []
        self._cv = threading.Condition()
        for name in ("result", "error", "hello"):
            self.sio.on(name, self._recorder(name))
        self.sio.connect(f"http://127.0.0.1:{port}", transports=list(transports), wait_timeout=10)

    def _recorder(self, name):
        def record(data=None):
            with self._cv:
                self.events.append((name, data))
                self._cv.notify_all()
        return record

    def answers(self) -> list[tuple[str, object]]:
        return [e for e in self.events if e[0] in ("result", "error")]

    def wait_for(self, predicate, timeout: float = 10.0) -> bool:
        """Whether ``predicate(answers)`` came true within ``timeout``. python-socketio runs each
        event's handler in a thread of its own, so an event can be recorded after the disconnect that
        followed it on the wire, and two events in another order than they were sent."""
        with self._cv:
            return self._cv.wait_for(lambda: predicate(self.answers()), timeout)

    def wait_answers(self, n: int, timeout: float = 30.0) -> list[tuple[str, object]]:
        with self._cv:
            ok = self._cv.wait_for(lambda: len(self.answers()) >= n, timeout)
        assert ok, f"{len(self.answers())} of {n} answers within {timeout} s"
        return self.answers()

    def send(self, payload, timeout: float = 30.0) -> tuple[str, object]:
        n = len(self.answers())
        self.sio.emit("frame", payload)
        return self.wait_answers(n + 1, timeout)[n]

    def close(self):
        try:
            self.sio.disconnect()
        except Exception:  # noqa: BLE001
            pass


def grey_jpeg(w: int = 320, h: int = 240) -> bytes:
    import cv2
    ok, buf = cv2.imencode(".jpg", np.full((h, w, 3), 128, np.uint8))
    assert ok
    return buf.tobytes()


def write_y4m(path: Path, bgr: np.ndarray, w: int = 640, h: int = 480, frames: int = 30) -> Path:
    """A YUV4MPEG2 (I420) clip of ``bgr`` centred on a grey canvas: Chromium's fake camera input."""
    import cv2
    side = min(w, h)
    face = cv2.resize(bgr, (side, side), interpolation=cv2.INTER_AREA)
    canvas = np.full((h, w, 3), 90, np.uint8)
    x0, y0 = (w - side) // 2, (h - side) // 2
    canvas[y0:y0 + side, x0:x0 + side] = face
    yuv = cv2.cvtColor(canvas, cv2.COLOR_BGR2YUV_I420).tobytes()
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F30:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(frames):
            f.write(b"FRAME\n")
            f.write(yuv)
    return path


def wss_frames(base_url: str, jpeg: bytes, n: int = 1, timeout: float = 60.0) -> list[tuple[str, object]]:
    """Send ``n`` frames over wss:// and return the answers [(event, data)], speaking Socket.IO on one
    thread. Why not socketio.Client: its read and write threads use the one ssl.SSLSocket at once,
    which TLS does not allow; under load that loses messages or the connection (python-engineio #461,
    python-socketio #1568), a flake of the test client, not of the server. Browsers are not affected."""
    import json
    import ssl

    import websocket
    ws_url = base_url.replace("https://", "wss://", 1) + "/socket.io/?EIO=4&transport=websocket"
    ws = websocket.create_connection(ws_url, origin=base_url, timeout=timeout, sslopt={"cert_reqs": ssl.CERT_NONE})

    def packet() -> str | bytes:
        while True:
            msg = ws.recv()
            if msg == "2":  # Engine.IO ping
                ws.send("3")
                continue
            return msg

    try:
        assert str(packet()).startswith("0"), "no Engine.IO open packet"
        ws.send("40")
        while not str(msg := packet()).startswith("40"):  # the server may greet ("hello") first
            if not str(msg).startswith("42"):
                raise AssertionError(f"namespace not connected: {msg!r:.200}")
        answers = []
        for _ in range(n):
            ws.send('451-["frame",{"_placeholder":true,"num":0}]')  # an event with one binary attachment
            ws.send_binary(jpeg)
            while True:
                msg = packet()
                if not (isinstance(msg, str) and msg.startswith("42")):
                    raise AssertionError(f"expected an event, got {msg!r:.200}")
                name, data = json.loads(msg[2:])
                if name in ("result", "error"):  # the answer to this frame; other events are notices
                    answers.append((name, data))
                    break
        return answers
    finally:
        ws.close()
