"""What a "Why?" costs: the explanation's own time and CPU, and what it does to other clients' frames.

    python bench/bench_why.py [--models DIR] [--clients 10] [--duration 20] [--why-clients 1,10,0]

Starts the server as bench/bench_load.py does (gunicorn -k eventlet, FER_MAX_FPS=1000 so that frame
clients go as fast as the server answers them), asks one 'why' to load the explainer (its load time
is reported), then measures, one after the other in the same run:

* ``--clients`` frame clients alone (each sends the astronaut frame and waits for the answer);
* the same frame clients while W more clients ask 'why' (the astronaut frame too) as often as the
  server allows them (one per ``why_interval``, 2 s), for each W of ``--why-clients``: 1 is a
  student clicking now and then, 10 is every student of a ten-webcam class clicking at once, the
  most the rate limit lets ten clients ask.

Reported per phase: the frame clients' faces/s and round-trip p50/p95 (all frames) and worst
client's p95; the whys answered, their round trip p50/p95 and errors; the explainer process's CPU
per answered 'why' (ms) and its CPU cores; the server's CPU cores (gunicorn + frame worker +
explainer), the load clients' CPU and everything else's (the machine's busy time from /proc/stat
less those two: on a shared machine, what other jobs took). The float32 matmul GFLOP/s of this
machine (numpy, ``harness.yardstick.matmul_gflops``) is measured before and after, in the same run,
as bench/bench_load.py does. The last phase is the baseline again: a drift between the two
baselines is the machine's, not the whys'. About 3 minutes with the defaults.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_load import (_children, admin_stats, cpu_s, fmt, frame_jpeg, pct, reference_label,  # noqa: E402
                        rss_mb, run_load, start_server, summarise)


def machine_busy_s() -> float:
    """CPU-seconds the whole machine has spent busy (every process, /proc/stat), to show how much of
    it went to others than the server and the load clients."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]  # idle + iowait
    return (sum(v[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _nice(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[16])
    except OSError:
        return None


def server_procs(root_pid: int) -> dict[str, int]:
    """{'arbiter', 'worker', 'frames', 'explainer'}: gunicorn's arbiter, its worker, and the worker's
    two children, the frame worker and the explainer (``webapp.worker --explain``)."""
    out = {"arbiter": root_pid}
    for k in _children(root_pid):
        out["worker"] = k
        for g in _children(k):
            out["explainer" if "--explain" in _cmdline(g) else "frames"] = g
    return out


class WhyClients(threading.Thread):
    """``n`` clients, each asking 'why' with ``jpeg``, waiting for the answer, then waiting until
    ``interval`` seconds after its last request (the server's limit), until ``stop``. Records
    (t_sent, round trip ms, code) per request."""

    def __init__(self, url: str, n: int, jpeg: bytes, interval: float):
        super().__init__(daemon=True)
        self.url, self.n, self.jpeg, self.interval = url, n, jpeg, interval
        self.records: list[tuple[float, float, str]] = []
        self.stop = threading.Event()
        self.connected = threading.Event()
        self._lock = threading.Lock()

    def _one(self, sio, box) -> None:
        while not self.stop.is_set():
            t0 = time.monotonic()
            box["ev"].clear()
            sio.emit("why", self.jpeg)
            if not box["ev"].wait(60):
                code, ms = "client_timeout", 60_000.0
            else:
                code, ms = box["code"], (time.monotonic() - t0) * 1000
            with self._lock:
                self.records.append((t0, ms, code))
            # the server counts the interval from when it accepted the last one, a little after t0
            self.stop.wait(max(0.0, t0 + self.interval + 0.2 - time.monotonic()))

    def run(self) -> None:
        import socketio
        clients = []
        for _ in range(self.n):
            sio = socketio.Client(reconnection=False)
            box = {"ev": threading.Event(), "code": None}

            def answer(code, box=box):
                def h(data=None):
                    box["code"] = code if code == "ok" else (data or {}).get("code", "error")
                    box["ev"].set()
                return h
            sio.on("why_result", answer("ok"))
            sio.on("why_error", answer("error"))
            sio.connect(self.url, transports=["websocket"], wait_timeout=30)
            clients.append((sio, box))
        self.connected.set()
        threads = [threading.Thread(target=self._one, args=c, daemon=True) for c in clients]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for sio, _ in clients:
            sio.disconnect()

    def between(self, t0: float, t1: float) -> list[tuple[float, float, str]]:
        with self._lock:
            return [r for r in self.records if t0 <= r[0] < t1]


def first_why(url: str, jpeg: bytes) -> tuple[str, float]:
    """One 'why' on a server whose explainer has not started: (answer code, seconds)."""
    w = WhyClients(url, 1, jpeg, 0)
    w.start()
    w.connected.wait(60)
    end = time.monotonic() + 120
    while not w.records and time.monotonic() < end:
        time.sleep(0.1)
    w.stop.set()
    w.join(70)
    return (w.records[0][2], w.records[0][1] / 1000) if w.records else ("client_timeout", float("nan"))


def idle_whys(url: str, jpeg: bytes, interval: float, count: int = 5) -> list[tuple[float, float, str]]:
    """``count`` whys one after the other on the otherwise idle server (the explainer started)."""
    w = WhyClients(url, 1, jpeg, interval)
    w.start()
    w.connected.wait(60)
    end = time.monotonic() + count * (interval + 5) + 30
    while len(w.records) < count and time.monotonic() < end:
        time.sleep(0.05)
    w.stop.set()
    w.join(70)
    return w.records[:count]


def phase(url: str, pids: dict, n: int, jpeg: bytes, ref: str, duration: float, warm_up: float,
          why_clients: int, interval: float) -> dict:
    """One measured phase: n frame clients, with ``why_clients`` asking 'why' meanwhile (0: none)."""
    cpu0 = {k: cpu_s(p) for k, p in pids.items()}
    busy0, own0 = machine_busy_s(), time.process_time()
    whys = WhyClients(url, why_clients, jpeg, interval) if why_clients else None
    if whys:
        whys.start()
        whys.connected.wait(60)
    run = run_load(url, n, [jpeg], duration, warm_up, procs=2)
    if whys:
        whys.stop.set()
        whys.join(70)
    cpu1 = {k: cpu_s(p) for k, p in pids.items()}
    busy1, own1 = machine_busy_s(), time.process_time()
    out = summarise(run, ref, run["measure_at"], run["end_at"])
    wall = run["end_at"] - run["measure_at"] + warm_up
    # the load clients: the frame clients' processes and this one (the why clients are its threads)
    out["client_cpu_cores"] = (run["client_cpu_s"] + own1 - own0) / wall
    out["machine_busy_cores"] = (busy1 - busy0) / wall
    out["cpu_cores"] = {k: (cpu1[k] - cpu0[k]) / wall for k in pids}
    out["server_cpu_cores"] = sum(out["cpu_cores"].values())
    out["why_clients"] = why_clients
    if whys:
        allw = whys.records  # the explainer's CPU of the phase covers every 'why' of the phase
        measured = whys.between(run["measure_at"], run["end_at"])
        ok = [r[1] for r in measured if r[2] == "ok"]
        codes: dict[str, int] = {}
        for r in measured:
            if r[2] != "ok":
                codes[r[2]] = codes.get(r[2], 0) + 1
        answered = sum(1 for r in allw if r[2] == "ok")
        out["why"] = {"answered": len(ok), "per_s": len(ok) / duration, "p50": pct(ok, 50), "p95": pct(ok, 95),
                      "errors": codes,
                      "explainer_cpu_ms_per_why": 1000 * (cpu1["explainer"] - cpu0["explainer"]) / answered
                      if answered else float("nan")}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", help="models folder (default: $FER_MODELS, else models/)")
    ap.add_argument("--clients", type=int, default=10, help="frame clients in every phase")
    ap.add_argument("--why-clients", default="1,10,0",
                    help="'why' clients of the phases after the first baseline (0: another baseline, for drift)")
    ap.add_argument("--duration", type=float, default=20.0, help="seconds measured per phase")
    ap.add_argument("--warm-up", type=float, default=5.0, help="seconds of load before measuring, per phase")
    ap.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="more server settings")
    ap.add_argument("--gflops-seconds", type=float, default=2.0, help="seconds of numpy matmul before and after")
    ap.add_argument("--json", help="write the raw numbers here")
    args = ap.parse_args(argv)

    from fer_core import store
    from harness import yardstick
    from webapp.config import WebConfig
    env_extra = {"FER_MAX_FPS": "1000"}
    for kv in args.env:
        k, _, v = kv.partition("=")
        env_extra[k] = v
    interval = WebConfig.from_env(env_extra).why_interval
    why_counts = [int(x) for x in args.why_clients.split(",") if x.strip()]
    models_dir = store.resolve_models_dir(args.models).resolve()
    jpeg = frame_jpeg()
    gflops = [yardstick.matmul_gflops(seconds=args.gflops_seconds)]
    tmp = tempfile.TemporaryDirectory()
    print(f"starting gunicorn on {models_dir} ...", file=sys.stderr, flush=True)
    proc, port, health = start_server(models_dir, env_extra, Path(tmp.name) / "server.log")
    url = f"http://127.0.0.1:{port}"
    rows, raw = [], {"argv": sys.argv[1:], "env": env_extra}
    try:
        ref, _ = reference_label(url, jpeg)
        code, load_s = first_why(url, jpeg)
        pids = server_procs(proc.pid)
        if code != "ok" or "explainer" not in pids:
            raise SystemExit(f"the first 'why' got {code!r}; processes {pids}")
        raw["first_why"] = {"code": code, "s": load_s, "explainer_nice": _nice(pids["explainer"]),
                            "frames_nice": _nice(pids["frames"])}
        c0 = {k: cpu_s(p) for k, p in pids.items()}
        idle = idle_whys(url, jpeg, interval)
        c1 = {k: cpu_s(p) for k, p in pids.items()}
        ok = [r[1] for r in idle if r[2] == "ok"]
        raw["idle"] = {"n": len(idle), "ok": len(ok), "p50": pct(ok, 50), "max": max(ok, default=float("nan")),
                       "cpu_ms_per_why": {k: 1000 * (c1[k] - c0[k]) / max(1, len(ok)) for k in pids}}
        for w in [0] + why_counts:
            print(f"{args.clients} frame clients, {w} why clients, {args.duration:g} s ...", file=sys.stderr, flush=True)
            rows.append(phase(url, pids, args.clients, jpeg, ref, args.duration, args.warm_up, w, interval))
        raw["rss_mb"] = {k: rss_mb(p) for k, p in pids.items()}
        raw["admin_stats"] = admin_stats(url)
    finally:
        gflops.append(yardstick.matmul_gflops(seconds=args.gflops_seconds))
        from harness.server import stop
        stop(proc)
        raw["server_log_tracebacks"] = (Path(tmp.name) / "server.log").read_text(errors="replace").count("Traceback")
        tmp.cleanup()
    raw["phases"], raw["matmul_gflops"] = rows, gflops
    fw = raw["first_why"]
    print(f"\n**Why benchmark** · {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC · {os.cpu_count()} cores "
          f"(server, explainer, load clients and anything else running share them) · models `{models_dir.name}/` "
          f"({', '.join(health.get('members') or [])}) · reference label `{ref}` · why_interval {interval:g} s · "
          f"`python bench/bench_why.py {' '.join(sys.argv[1:])}`\n")
    print(f"float32 matmul (numpy): {' / '.join(f'{g:.0f}' for g in gflops)} GFLOP/s before / after, mean "
          f"**{statistics.fmean(gflops):.0f} GFLOP/s**. First 'why' (starts the explainer): {fw['s']:.1f} s; "
          f"explainer nice {fw['explainer_nice']}, frame worker nice {fw['frames_nice']}.\n")
    idle = raw["idle"]
    cm = idle["cpu_ms_per_why"]
    print(f"On the idle server, {idle['ok']} of {idle['n']} whys one after the other: round trip p50 "
          f"{fmt(idle['p50'])} ms (max {fmt(idle['max'])}); CPU per why {sum(cm.values()):.0f} ms "
          f"(web {cm.get('arbiter', 0) + cm.get('worker', 0):.0f} + frame worker {cm.get('frames', 0):.0f} + "
          f"explainer {cm.get('explainer', 0):.0f}).\n")
    print("| why clients | frame clients: faces/s | frames p50 / p95, ms | worst client p95, ms | frame errors "
          "| whys answered (per s) | why p50 / p95, ms | why errors | explainer CPU per why, ms "
          "| server CPU, cores (web + frames + explainer) | load clients CPU, cores | others' CPU, cores |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        c = r["cpu_cores"]
        w = r.get("why")
        errs = sum(r["errors"].values())
        print(f"| {r['why_clients']} | {fmt(r['faces_per_s'], 1)} | {fmt(r['p50'])} / {fmt(r['p95'])} | "
              f"{fmt(r['worst_client_p95'])} | {errs} | "
              + (f"{w['answered']} ({w['per_s']:.2f}) | {fmt(w['p50'])} / {fmt(w['p95'])} | "
                 f"{sum(w['errors'].values()) or 0}{' ' + str(w['errors']) if w['errors'] else ''} | "
                 f"{fmt(w['explainer_cpu_ms_per_why'])} | " if w else "– | – | – | – | ")
              + f"{r['server_cpu_cores']:.2f} ({c.get('arbiter', 0) + c.get('worker', 0):.2f} + "
                f"{c.get('frames', 0):.2f} + {c.get('explainer', 0):.2f}) | {r['client_cpu_cores']:.2f} | "
                f"{r['machine_busy_cores'] - r['server_cpu_cores'] - r['client_cpu_cores']:.2f} |")
    rss = raw.get("rss_mb", {})
    print(f"\nRSS at the end, MB: web {rss.get('arbiter', 0) + rss.get('worker', 0):.0f}, frame worker "
          f"{rss.get('frames', float('nan')):.0f}, explainer {rss.get('explainer', float('nan')):.0f}.")
    print(f"\nServer log: {raw['server_log_tracebacks']} tracebacks.")
    if args.json:
        Path(args.json).write_text(json.dumps(raw, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
