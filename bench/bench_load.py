"""Load benchmark: N simulated webcams against the server started the documented way.

    python bench/bench_load.py [--models DIR] [--clients 1,10,30,60] [--duration 60]
    python bench/bench_load.py --soak 600 --clients 30            # one long run, reported per minute

Starts ``gunicorn -k eventlet -w 1 --no-control-socket --bind 127.0.0.1:PORT 'webapp:create_app()'``
(harness.server.gunicorn_cmd) with FER_MODELS (as docs/classroom.md does; ``--url`` measures a
server that is already running instead), then, for each client count N, runs N python-socketio
clients over WebSocket. Each sends a webcam clip of the astronaut photo
(``skimage.data.astronaut()``, one face, 320x320 JPEGs with sensor noise: bench/bench_track.py's
clips), ``--scene still`` (she sits still: only the noise changes) or ``moving`` (the picture sways,
up to ~4 px a frame), each client from its own place in the clip, forth and back, and waits for the
answer before sending the next frame: a client goes as fast as the server answers it. So that this
measures capacity, not the per-client cap, the server is started with FER_MAX_FPS=1000
(``--server-max-fps``); everything else is the default configuration (``--env NAME=VALUE`` changes
a setting).

Measured per N, over ``--duration`` seconds after a ``--warm-up``: faces/s served (all clients),
each client's frames/s (the slowest one is reported), round trip p50/p95/p99 over every frame and the
worst client's p95, errors (error events, wrong labels, disconnects, timeouts), the server's memory
(RSS of the gunicorn arbiter, its worker and the inference worker) and CPU use, and the load
client's own CPU use (it runs on the same machine). Prints Markdown; ``--json FILE`` keeps the raw
numbers. The clients run in ``--procs`` processes (threads inside), so one GIL does not serialise them.

The header also gives this machine's float32 matmul GFLOP/s (numpy, ``harness.yardstick.matmul_gflops``),
measured in the same run just before and just after the load (the mean of the two), and the
**capacity index** = faces/s at 30 clients / GFLOP/s x 100 (a column for every client count): the
machine's speed moves from day to day, the index compares runs on different days. On a machine that
other processes share, both move with their load (each by its own share of the cores); the **faces
per server CPU-second** (faces/s / the server's CPU cores used) moves far less, and compares code
versions measured on such a machine.
"""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import platform
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
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


SCENES = ("still", "moving")


def frame_jpeg(width: int = 320) -> bytes:
    """The astronaut photo as one clean 320 px JPEG (bench_hostile's and bench_why's frame)."""
    import cv2
    from skimage import data
    bgr = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    h = round(bgr.shape[0] * width / bgr.shape[1])
    ok, buf = cv2.imencode(".jpg", cv2.resize(bgr, (width, h), interpolation=cv2.INTER_AREA),
                           [cv2.IMWRITE_JPEG_QUALITY, 80])
    return buf.tobytes()


def scene_jpegs(scene: str, n: int = 60) -> list[bytes]:
    """``n`` frames of bench/bench_track.py's ``scene`` clip (320x320 JPEGs, noise sigma 2), then
    the same back to the second (played round and round, the clip never jumps)."""
    if scene not in SCENES:
        raise ValueError(f"scene must be one of {SCENES}, got {scene!r}")
    sys.path.insert(0, str(ROOT / "bench"))
    from bench_track import clips
    frames = [jpeg for jpeg, _, _ in clips(n)[scene]]
    return frames + frames[-2:0:-1]


def pct(values, q):
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, max(0, math.ceil(q / 100 * len(v)) - 1))]


# -- processes: memory and CPU from /proc ---------------------------------------------------------------

def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def server_pids(root_pid: int) -> dict[str, int]:
    """{'arbiter', 'worker', 'inference'} for a gunicorn started by us (a tree: arbiter > worker >
    inference worker); {'server', 'inference'} for a single process."""
    kids = _children(root_pid)
    if not kids:
        return {"server": root_pid}
    out = {"arbiter": root_pid}
    for k in kids:
        grand = _children(k)
        if grand or "worker" not in out:
            out["worker"] = k
            for g in grand:
                out["inference"] = g
    return out


def rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE / 2**20
    except OSError:
        return float("nan")


def cpu_s(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except OSError:
        return float("nan")


class Sampler(threading.Thread):
    """RSS of the server's processes every ``every`` seconds."""

    def __init__(self, root_pid: int, every: float = 2.0):
        super().__init__(daemon=True)
        self.root_pid, self.every = root_pid, every
        self.samples: list[tuple[float, dict]] = []
        self._halt = threading.Event()

    def run(self):
        while not self._halt.is_set():
            pids = server_pids(self.root_pid)
            self.samples.append((time.monotonic(), {k: rss_mb(p) for k, p in pids.items()}))
            self._halt.wait(self.every)

    def stop(self):
        self._halt.set()
        self.join(5)

    def between(self, t0: float, t1: float) -> list[dict]:
        return [s for t, s in self.samples if t0 <= t <= t1]


# -- the clients -------------------------------------------------------------------------------------

def client_proc(url: str, n: int, jpegs: list, ready, go, times, out, conn_timeout: float, first: int = 0):
    """n clients in threads; each records (t_sent, rtt_ms, code, label) for every frame it sends.
    Client i sends ``jpegs`` in turn from index (first + i) x 7, round and round."""
    import socketio

    t_cpu = time.process_time()
    records = [[] for _ in range(n)]
    problems = [[] for _ in range(n)]
    clients = []
    closing = threading.Event()
    for i in range(n):
        sio = socketio.Client(reconnection=False)
        box = {"ev": threading.Event(), "name": None, "data": None, "hello": threading.Event()}

        def on(name, box=box):
            def h(data=None):
                if name == "hello":
                    box["hello"].set()
                    return
                box["name"], box["data"] = name, data
                box["ev"].set()
            return h

        for ev in ("result", "error", "hello"):
            sio.on(ev, on(ev))
        sio.on("disconnect", (lambda reason=None, i=i: closing.is_set() or problems[i].append(f"disconnected: {reason}")))
        try:
            sio.connect(url, transports=["websocket"], wait_timeout=conn_timeout)
            box["hello"].wait(conn_timeout)
        except Exception as e:  # noqa: BLE001
            problems[i].append(f"connect: {type(e).__name__}: {e}")
        clients.append((sio, box))
    ready.put(os.getpid())
    go.wait()
    measure_at, end_at = times[0], times[1]

    def run(i):
        sio, box = clients[i]
        if not sio.connected:
            return
        rec = records[i]
        k = (first + i) * 7
        while True:
            t0 = time.monotonic()
            if t0 >= end_at:
                break
            box["ev"].clear()
            try:
                sio.emit("frame", jpegs[k % len(jpegs)])
                k += 1
            except Exception as e:  # noqa: BLE001
                problems[i].append(f"emit: {type(e).__name__}")
                break
            if not box["ev"].wait(60):
                rec.append((t0, 60_000.0, "client_timeout", None, None, None))
                problems[i].append("no answer within 60 s")
                break
            t1 = time.monotonic()
            name, data = box["name"], box["data"]
            if name == "result":
                faces = data.get("faces") or []
                label = faces[0]["label"] if faces else None
                rec.append((t0, (t1 - t0) * 1000, "ok" if faces else "no_face", label,
                            data.get("batch"), data.get("ms")))
            else:
                rec.append((t0, (t1 - t0) * 1000, (data or {}).get("code", "error"), None, None, None))

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    closing.set()
    for sio, _ in clients:
        try:
            sio.disconnect()
        except Exception:  # noqa: BLE001
            pass
    out.put({"records": records, "problems": problems, "cpu_s": time.process_time() - t_cpu,
             "measure_at": measure_at})


def run_load(url: str, n: int, jpegs: list, duration: float, warm_up: float, procs: int,
             conn_timeout: float = 30.0) -> dict:
    ctx = mp.get_context("spawn")
    ready, out, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    times = ctx.Array("d", [0.0, 0.0])
    k = max(1, min(procs, n))
    sizes = [n // k + (1 if i < n % k else 0) for i in range(k)]
    ps = [ctx.Process(target=client_proc, args=(url, s, jpegs, ready, go, times, out, conn_timeout, sum(sizes[:j])),
                      daemon=True) for j, s in enumerate(sizes)]
    for p in ps:
        p.start()
    for _ in ps:
        ready.get(timeout=conn_timeout * n + 60)
    now = time.monotonic()
    times[0], times[1] = now + warm_up, now + warm_up + duration
    go.set()
    results = [out.get(timeout=warm_up + duration + 180) for _ in ps]
    for p in ps:
        p.join(30)
    records = [r for res in results for r in res["records"]]
    problems = [p for res in results for per_client in res["problems"] for p in per_client]
    return {"records": records, "problems": problems, "client_cpu_s": sum(r["cpu_s"] for r in results),
            "measure_at": times[0], "end_at": times[1]}


def summarise(run: dict, ref_label: str | None, t0: float, t1: float) -> dict:
    """Numbers for frames SENT in [t0, t1)."""
    dur = t1 - t0
    per_client, all_rtt, errors, faces, batches = [], [], {}, 0, []
    for rec in run["records"]:
        mine = [r for r in rec if t0 <= r[0] < t1]
        ok = [r for r in mine if r[2] in ("ok", "no_face")]
        for r in mine:
            code = r[2]
            if code == "ok" and ref_label is not None and r[3] != ref_label:
                code = "wrong_label"
            if code == "no_face":
                code = "no_face"  # the astronaut always has a face: a miss is an error too
            if code != "ok":
                errors[code] = errors.get(code, 0) + 1
        faces += sum(1 for r in ok if r[2] == "ok")
        batches += [r[4] for r in ok if r[4]]
        rtt = [r[1] for r in ok]
        all_rtt += rtt
        per_client.append({"fps": len(ok) / dur, "p95": pct(rtt, 95) if rtt else float("nan")})
    fps = [c["fps"] for c in per_client] or [0.0]
    return {"faces_per_s": faces / dur, "min_client_fps": min(fps), "median_client_fps": statistics.median(fps),
            "p50": pct(all_rtt, 50), "p95": pct(all_rtt, 95), "p99": pct(all_rtt, 99),
            "worst_client_p95": max((c["p95"] for c in per_client), default=float("nan")),
            "errors": errors, "mean_batch": statistics.fmean(batches) if batches else float("nan"),
            "frames": len(all_rtt)}


# -- the server --------------------------------------------------------------------------------------

def start_server(models_dir: Path, env_extra: dict, log_path: Path, timeout: float = 600):
    from harness.server import free_port, gunicorn_cmd, server_env, start, wait_healthy
    port = free_port()
    proc = start(gunicorn_cmd(port), server_env(models_dir, **env_extra), log_path)
    health = wait_healthy(port, proc, log_path, timeout=timeout)
    return proc, port, health


def admin_stats(url: str) -> dict:
    import requests
    try:
        return requests.get(url + "/admin/stats", timeout=10).json()
    except Exception:  # noqa: BLE001
        return {}


def reference_label(url: str, jpeg: bytes) -> tuple[str | None, int]:
    """The label and face count the server gives the frame when idle (what every answer must match)."""
    from harness.server import Client
    port = int(url.rsplit(":", 1)[1])
    c = Client(port)
    try:
        name, res = c.send(jpeg, timeout=120)
    finally:
        c.close()
    if name != "result" or not res["faces"]:
        raise SystemExit(f"the reference frame got {name} {res}: expected a face")
    return res["faces"][0]["label"], len(res["faces"])


def fmt(v, nd=0):
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{nd}f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", help="models folder (default: $FER_MODELS, else models/)")
    ap.add_argument("--clients", default="1,10,30,60", help="client counts, comma-separated")
    ap.add_argument("--duration", type=float, default=60.0, help="seconds measured per client count")
    ap.add_argument("--warm-up", type=float, default=5.0, help="seconds of load before measuring")
    ap.add_argument("--soak", type=float, help="one run of this many seconds per client count, reported per minute")
    ap.add_argument("--procs", type=int, default=2, help="load client processes")
    ap.add_argument("--server-max-fps", default="1000", help="FER_MAX_FPS of the started server")
    ap.add_argument("--scene", choices=SCENES, default="still",
                    help="the clip every client sends: still (noise only) or moving (docstring)")
    ap.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="more server settings")
    ap.add_argument("--url", help="measure this running server instead of starting one (no RSS then)")
    ap.add_argument("--pid", type=int, help="with --url: the server's root process, for RSS")
    ap.add_argument("--json", help="write the raw numbers here")
    ap.add_argument("--gflops-seconds", type=float, default=3.0,
                    help="seconds of numpy matmul measured before and after the load (the yardstick)")
    args = ap.parse_args(argv)

    from fer_core import cost, store
    from harness import yardstick
    counts = [int(x) for x in args.clients.split(",") if x.strip()]
    duration = args.soak or args.duration
    jpegs = scene_jpegs(args.scene)
    env_extra = {"FER_MAX_FPS": args.server_max_fps}
    for kv in args.env:
        k, _, v = kv.partition("=")
        env_extra[k] = v
    models_dir = store.resolve_models_dir(args.models).resolve()
    gflops = [yardstick.matmul_gflops(seconds=args.gflops_seconds)]  # before the server loads the cores
    tmp = tempfile.TemporaryDirectory()
    proc = None
    if args.url:
        url, root_pid = args.url.rstrip("/"), args.pid
    else:
        print(f"starting gunicorn on {models_dir} ...", file=sys.stderr, flush=True)
        t = time.perf_counter()
        proc, port, health = start_server(models_dir, env_extra, Path(tmp.name) / "server.log")
        print(f"ready in {time.perf_counter() - t:.1f} s: {health}", file=sys.stderr, flush=True)
        url, root_pid = f"http://127.0.0.1:{port}", proc.pid
    sampler = Sampler(root_pid) if root_pid else None
    if sampler:
        sampler.start()
    rows, raw = [], {"argv": sys.argv[1:], "env": env_extra, "runs": []}
    try:
        ref, _ = reference_label(url, jpegs[0])
        stats0 = admin_stats(url)
        worker = stats0.get("worker") or {}
        idle_rss = sampler.samples[-1][1] if sampler and sampler.samples else {}
        for n in counts:
            print(f"{n} clients, {duration:g} s ...", file=sys.stderr, flush=True)
            pids = server_pids(root_pid) if root_pid else {}
            cpu0 = {k: cpu_s(p) for k, p in pids.items()}
            s0 = admin_stats(url)
            run = run_load(url, n, jpegs, duration, args.warm_up, args.procs)
            s1 = admin_stats(url)
            cpu1 = {k: cpu_s(p) for k, p in pids.items()}
            total = summarise(run, ref, run["measure_at"], run["end_at"])
            wall = run["end_at"] - run["measure_at"] + args.warm_up
            server_cpu = sum(cpu1[k] - cpu0[k] for k in pids)
            total["server_cpu_cores"] = server_cpu / wall if pids else None
            total["cpu_cores"] = {k: (cpu1[k] - cpu0[k]) / wall for k in pids}
            total["client_cpu_cores"] = run["client_cpu_s"] / wall
            total["problems"] = run["problems"][:10]
            total["n_problems"] = len(run["problems"])
            mem = sampler.between(run["measure_at"], run["end_at"]) if sampler else []
            total["rss_mb"] = {k: max(m.get(k, float("nan")) for m in mem) for k in (mem[0] if mem else {})}
            total["rss_total_mb"] = max((sum(m.values()) for m in mem), default=float("nan"))
            w0, w1 = s0.get("worker") or {}, s1.get("worker") or {}
            if w1.get("batches") and w0.get("batches") is not None and w1["batches"] > w0["batches"]:
                total["server_mean_batch"] = (w1["frames"] - w0["frames"]) / (w1["batches"] - w0["batches"])
            total["clients"] = n
            if args.soak:
                minutes = []
                t = run["measure_at"]
                while t < run["end_at"] - 1:
                    t_end = min(t + 60, run["end_at"])
                    m = summarise(run, ref, t, t_end)
                    mm = sampler.between(t, t_end) if sampler else []
                    m["rss_total_mb"] = statistics.fmean(sum(x.values()) for x in mm) if mm else float("nan")
                    m["rss_mb"] = {k: statistics.fmean(x[k] for x in mm) for k in (mm[0] if mm else {})}
                    minutes.append(m)
                    t = t_end
                total["minutes"] = minutes
            rows.append(total)
            raw["runs"].append(total)
    finally:
        if proc is not None and rows:  # the server idles now; measured before it stops, as before it started
            gflops.append(yardstick.matmul_gflops(seconds=args.gflops_seconds))
        if sampler:
            sampler.stop()
        if proc is not None:
            from harness.server import stop
            stop(proc)
            log = (Path(tmp.name) / "server.log").read_text(errors="replace")
            raw["server_log_tracebacks"] = log.count("Traceback")
        tmp.cleanup()

    import keras  # noqa: F401 - only for the version line
    members = worker.get("members") or []
    gf = statistics.fmean(gflops)
    raw["matmul_gflops"] = gflops
    for r in rows:
        r["capacity_index"] = yardstick.capacity_index(r["faces_per_s"], gf)
        cores = r.get("server_cpu_cores")  # gunicorn + inference worker
        r["faces_per_cpu_s"] = r["faces_per_s"] / cores if cores else float("nan")
    at30 = next((r for r in rows if r["clients"] == 30), None)
    print(f"\n**Load benchmark** · {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC · {platform.machine()}, "
          f"{os.cpu_count()} cores (server, inference worker and load clients share them) · models "
          f"`{models_dir.name}/` ({len(members)} member{'s' if len(members) != 1 else ''}: {', '.join(members)}; "
          f"test-time views {worker.get('tta')}) · scene `{args.scene}` · reference label `{ref}` · server settings "
          f"{' '.join(f'{k}={v}' for k, v in env_extra.items())} · `python bench/bench_load.py "
          f"{' '.join(sys.argv[1:])}`\n")
    face_gflop = None
    if members and worker.get("tta"):
        from fer_core import tta as tta_views
        face_gflop = cost.ensemble_gflop_per_face([store.load_member(models_dir / n)[0] for n in members],
                                                  tta_views.n_views(worker["tta"]))
    print(f"float32 matmul (numpy, 1024x1024, median): {' / '.join(f'{g:.0f}' for g in gflops)} GFLOP/s "
          f"{'before / after the load' if len(gflops) > 1 else 'before the load'}, mean **{gf:.0f} GFLOP/s**"
          + (f" · the ensemble costs {face_gflop:.2f} GFLOP per face" if face_gflop else "")
          + (f" · **capacity index {at30['capacity_index']:.1f}** ({at30['faces_per_s']:.1f} faces/s at 30 "
             f"clients / {gf:.0f} GFLOP/s x 100)" if at30 else "") + ".\n")

    if idle_rss:
        print(f"Server RSS idle after start: {' + '.join(f'{k} {v:.0f}' for k, v in idle_rss.items())} "
              f"= {sum(idle_rss.values()):.0f} MB.\n")
    def cpu_s_(r):
        c = r.get("cpu_cores") or {}
        if not c:
            return "–"
        web = c.get("arbiter", 0) + c.get("worker", 0) + c.get("server", 0)
        return f"{r['server_cpu_cores']:.2f} ({web:.2f} + {c.get('inference', float('nan')):.2f})"

    print("| clients | faces/s | capacity index | faces per server CPU-s | slowest client, frames/s | round trip p50 / p95 / p99, ms | worst client p95, ms "
          "| errors | mean batch | server RSS max, MB (gunicorn + inference) | server CPU, cores (gunicorn + "
          "inference) | load client CPU, cores |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        rss = r["rss_mb"]
        rss_s = (f"{r['rss_total_mb']:.0f} ({rss.get('arbiter', 0) + rss.get('worker', 0):.0f} + "
                 f"{rss.get('inference', float('nan')):.0f})" if rss else "–")
        errs = sum(r["errors"].values()) + r["n_problems"]
        err_s = str(errs) if not errs else f"{errs} ({', '.join(f'{k} {v}' for k, v in r['errors'].items())}" \
            f"{'; ' + '; '.join(r['problems'][:3]) if r['problems'] else ''})"
        print(f"| {r['clients']} | {fmt(r['faces_per_s'], 1)} | {fmt(r['capacity_index'], 1)} | "
              f"{fmt(r['faces_per_cpu_s'], 1)} | "
              f"{fmt(r['min_client_fps'], 2)} | "
              f"{fmt(r['p50'])} / {fmt(r['p95'])} / {fmt(r['p99'])} | {fmt(r['worst_client_p95'])} | {err_s} | "
              f"{fmt(r.get('server_mean_batch', r['mean_batch']), 1)} | {rss_s} | {cpu_s_(r)} | "
              f"{fmt(r['client_cpu_cores'], 2)} |")
    for r in rows:
        if "minutes" in r:
            print(f"\nSoak, {r['clients']} clients, per minute:\n")
            print("| minute | faces/s | slowest client, frames/s | p50 / p95 / p99, ms | errors | server RSS, MB "
                  "(gunicorn worker / inference worker) |")
            print("|---|---|---|---|---|---|")
            for i, m in enumerate(r["minutes"], 1):
                rss = m["rss_mb"]
                print(f"| {i} | {fmt(m['faces_per_s'], 1)} | {fmt(m['min_client_fps'], 2)} | {fmt(m['p50'])} / "
                      f"{fmt(m['p95'])} / {fmt(m['p99'])} | {sum(m['errors'].values())} | {fmt(m['rss_total_mb'])} "
                      f"({fmt(rss.get('worker'))} / {fmt(rss.get('inference'))}) |")
            first, last = r["minutes"][0]["rss_total_mb"], r["minutes"][-1]["rss_total_mb"]
            growth = (last / first - 1) * 100 if first == first and last == last else float("nan")
            print(f"\nRSS growth from minute 1 to minute {len(r['minutes'])}: {fmt(growth, 1)} %"
                  + (f"; from idle after start: {fmt((last / sum(idle_rss.values()) - 1) * 100, 1)} %"
                     if idle_rss else "") + ".")
            r["rss_growth_pct"] = growth
    if "server_log_tracebacks" in raw:
        print(f"\nServer log: {raw['server_log_tracebacks']} tracebacks.")
    if args.json:
        Path(args.json).write_text(json.dumps(raw, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
