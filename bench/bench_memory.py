"""Memory of the web app's processes, RSS and PSS, started the two documented ways.

    python bench/bench_memory.py [--models DIR] [--servers dev,gunicorn] [--repeat 2] [--frames 20]

For each server (``python -m webapp`` and ``gunicorn -k eventlet -w 1 ...``, on 127.0.0.1, ports
5100-5199) and each repeat, two starts on a new, empty runtime export cache (``FER_RUNTIME_CACHE``,
fer_core/runtime.py):

* the **first start**, which exports the ensemble to LiteRT before serving (as a fresh checkout
  does once): every process's memory idle after start; after ``--frames`` frames of the astronaut
  photo over Socket.IO; after the first 'why' (which starts the explainer); after a ``kill -9`` of
  the inference worker and its replacement's start (from the cache); after frames again;
* a **second start**, the export now cached (every start after the first): idle, after frames,
  after the first 'why'.

Each server is stopped with SIGTERM, and its processes must be gone within 10 s.

Readings from /proc only, per process: RSS (``VmRSS`` of /proc/PID/status: every page it maps,
shared ones included) and PSS (``Pss`` of /proc/PID/smaps_rollup: each shared page split among all
the processes that map it, other programs' too). For the server as a whole, **unique**: its
processes' resident pages counted once each (the physical page numbers of /proc/PID/pagemap, which
needs root), i.e. what the server holds on a machine to itself, however many other programs map the
same libraries. MB = 2**20 bytes. Prints Markdown.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from harness.server import (Client, dev_cmd, gunicorn_cmd, server_env, start, stop,  # noqa: E402
                             wait_gone, wait_healthy)

PAGE = os.sysconf("SC_PAGE_SIZE")
SETTLE_S = 3.0  # after a change, before reading: late allocations (TensorFlow's first calls) land


def kb_field(path: str, name: str) -> float:
    """MB of ``name:`` (a kB field) in a /proc file, NaN if the process is gone."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(name + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def processes(root: int) -> dict[str, int]:
    """{'arbiter' (gunicorn only), 'web', 'worker', 'explainer' (once started)}: pids by role."""
    out, web = {}, root
    if "gunicorn" in cmdline(root):
        out["arbiter"] = root
        web = next((k for k in children(root) if "webapp.worker" not in cmdline(k)), None)
    if web is None:
        return out
    out["web"] = web
    for k in children(web):
        out["explainer" if "--explain" in cmdline(k) else "worker"] = k
    return out


def reading(pid: int) -> tuple[float, float]:
    return kb_field(f"/proc/{pid}/status", "VmRSS"), kb_field(f"/proc/{pid}/smaps_rollup", "Pss")


def resident_pages(pid: int) -> set[int]:
    """Physical page numbers of ``pid``'s resident pages (empty without root: the kernel hides them)."""
    import numpy as np
    pages, ranges = set(), []
    try:
        with open(f"/proc/{pid}/smaps") as f:
            for line in f:
                if "-" in line.split(" ", 1)[0]:
                    lo, hi = (int(x, 16) for x in line.split(" ", 1)[0].split("-"))
                elif line.startswith("Rss:") and int(line.split()[1]) > 0:
                    ranges.append((lo, hi))
        fd = os.open(f"/proc/{pid}/pagemap", os.O_RDONLY)
    except OSError:
        return pages
    try:
        for lo, hi in ranges:
            e = np.frombuffer(os.pread(fd, (hi - lo) // PAGE * 8, lo // PAGE * 8), np.uint64)
            pages.update((e[(e >> np.uint64(63)) == 1] & np.uint64((1 << 55) - 1)).tolist())
    finally:
        os.close(fd)
    pages.discard(0)
    return pages


def astronaut_jpeg() -> bytes:
    import cv2
    from skimage import data
    bgr = cv2.resize(cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR), (320, 320), interpolation=cv2.INTER_AREA)
    return cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes()


def send_frames(port: int, jpeg: bytes, n: int) -> None:
    c = Client(port)
    try:
        for _ in range(n):
            name, data = c.send(jpeg)
            if name != "result":
                raise RuntimeError(f"frame answered {name}: {data}")
            time.sleep(0.04)  # under the server's 30 frames/s per client
    finally:
        c.close()


def first_why(port: int, jpeg: bytes, timeout: float = 180.0) -> str:
    """Ask 'why' until it is answered (the first one starts the explainer and may get 'starting')."""
    import socketio
    box: dict = {}
    sio = socketio.Client(reconnection=False)
    sio.on("why_result", lambda d=None: box.update(code="ok"))
    sio.on("why_error", lambda d=None: box.update(code=(d or {}).get("code", "error")))
    sio.connect(f"http://127.0.0.1:{port}", transports=["websocket"], wait_timeout=10)
    end = time.monotonic() + timeout
    try:
        while time.monotonic() < end:
            box.clear()
            sio.emit("why", jpeg)
            while "code" not in box and time.monotonic() < end:
                time.sleep(0.1)
            if box.get("code") == "ok":
                return "ok"
            time.sleep(2.5)  # 'starting' or 'rate_limited': the page retries too
        return box.get("code", "timeout")
    finally:
        sio.disconnect()


def restart_worker(port: int, root: int, proc, log: Path) -> None:
    """``kill -9`` the inference worker and wait for its replacement to be ready."""
    old = processes(root)["worker"]
    os.kill(old, signal.SIGKILL)
    wait_gone(old, 10)
    end = time.monotonic() + 180
    while time.monotonic() < end:
        new = processes(root).get("worker")
        if new and new != old:
            try:
                wait_healthy(port, proc, log, timeout=5)
                return
            except AssertionError:
                pass
        time.sleep(0.5)
    raise RuntimeError("the inference worker was not replaced within 180 s")


def run_once(kind: str, port: int, models: Path, jpeg: bytes, frames: int, cache: Path,
             first: bool) -> list[tuple[str, str, float, float]]:
    log = Path(tempfile.mkstemp(prefix=f"bench_memory_{kind}_", suffix=".log")[1])
    cmd = dev_cmd(port, models) if kind == "dev" else gunicorn_cmd(port)
    proc = start(cmd, server_env(models, FER_RUNTIME_CACHE=cache), log)
    rows, when = [], "first start" if first else "second start"

    def read(stage: str) -> None:
        time.sleep(SETTLE_S)
        pids = processes(proc.pid)
        for role, pid in pids.items():
            rows.append((f"{when}: {stage}", role, *reading(pid)))
        unique = set().union(*(resident_pages(p) for p in pids.values()))
        rows.append((f"{when}: {stage}", "unique", len(unique) * PAGE / 2**20, float("nan")))

    try:
        wait_healthy(port, proc, log, timeout=300)
        read("idle")
        send_frames(port, jpeg, frames)
        read(f"{frames} frames")
        code = first_why(port, jpeg)
        if code != "ok":
            raise RuntimeError(f"the first 'why' got {code}")
        read("first why")
        if first:
            restart_worker(port, proc.pid, proc, log)
            read("worker kill -9, restarted")
            send_frames(port, jpeg, frames)
            read(f"restarted, {frames} frames")
    finally:
        pids = list(processes(proc.pid).values())
        rc = stop(proc)
        left = [p for p in pids if not wait_gone(p, 10)]
        if left:
            print(f"warning: {kind} server left processes {left} (log {log})", file=sys.stderr)
    print(f"{kind}: stopped with exit status {rc}; log {log}", file=sys.stderr)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", type=Path, default=ROOT / "models")
    ap.add_argument("--servers", default="dev,gunicorn", help="comma-separated: dev, gunicorn")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--port", type=int, default=5100, help="first port; each run takes the next")
    args = ap.parse_args(argv)
    kinds = [k.strip() for k in args.servers.split(",") if k.strip()]
    for k in kinds:
        if k not in ("dev", "gunicorn"):
            raise SystemExit(f"--servers: expected dev or gunicorn, got {k!r}")
    jpeg = astronaut_jpeg()
    print("| server | run | stage | process | RSS, MB | PSS, MB | unique, MB |\n|---|---|---|---|---|---|---|")
    port = args.port
    for kind in kinds:
        for r in range(1, args.repeat + 1):
            with tempfile.TemporaryDirectory(prefix="bench_memory_cache_") as cache:
                rows = []
                for first in (True, False):
                    rows += run_once(kind, port, args.models.resolve(), jpeg, args.frames, Path(cache), first)
                    port += 1
            stages = dict.fromkeys(s for s, *_ in rows)
            for stage in stages:
                here = [row for row in rows if row[0] == stage and row[1] != "unique"]
                unique = next(row[2] for row in rows if row[0] == stage and row[1] == "unique")
                for _, role, rss, pss in here:
                    print(f"| {kind} | {r} | {stage} | {role} | {rss:.0f} | {pss:.0f} | |", flush=True)
                print(f"| {kind} | {r} | {stage} | all | {sum(x[2] for x in here):.0f} "
                      f"| {sum(x[3] for x in here):.0f} | **{unique:.0f}** |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
