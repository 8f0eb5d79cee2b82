"""Hostile clients against a server started the documented way, with a well-behaved client alongside.

    python bench/bench_hostile.py [--server gunicorn|dev] [--models DIR] [--seconds 20] [--attacks 0,1,2,3,4]
                                  [--stalled 100] [--json FILE]
    python bench/bench_hostile.py --sigterm [--models DIR] [--json FILE]

Starts ``gunicorn -k eventlet -w 1 --no-control-socket --bind 127.0.0.1:PORT 'webapp:create_app()'``
(or ``python -m webapp``; harness/server.py) on a free port of 127.0.0.1 with FER_MODELS (default:
the shipped models/), then runs, one after the other, for ``--seconds`` each: no attack (the
baseline, 0), and the attacks 1-3 (docs/classroom.md), each from ``--attackers`` threads, and attack
4, loopback only, bounded in time (``--attacks`` picks some):

1. oversize long-polling POSTs: a polling session, then a POST declaring 3 MB and sending nothing;
2. attachment floods: a `frame` event declaring 5,999,999 attachments, then 1 MB binary messages;
3. invalid packets: a new WebSocket per packet, one of broken JSON, a placeholder pointing at a
   missing attachment, JSON nested 100,000 deep, a stray binary message, binary on another event;
4. stalled long-polling bodies: ``--stalled`` polling sessions at once (one thread), each POSTing
   1.9 MB of a declared 2,000,000-byte body and then nothing, until the server answers (408 after
   its 10 s body deadline); then the next wave, until the phase ends.

Meanwhile one well-behaved client sends the astronaut photo (320 px JPEG, one face) over WebSocket at
most ``--fps`` frames/s, one in flight, as the page does, and records every round trip. Reported per
phase: what the attackers sent and what the server answered, whether the server held (sockets left
in CLOSE_WAIT, memory of the serving process, /healthz, log lines added), and the good client's
frames, errors and round-trip p50/p95/max. Prints Markdown; ``--json`` keeps the numbers.

``--sigterm``: SIGTERM with frames in flight, on both servers (a fresh one per case): "frozen", the
inference worker SIGSTOPped and 4 clients with one frame each held by it; "load", 5 clients each
streaming frames as the page does (one in flight, at most ``--fps`` a second, none after an
'unavailable'), SIGTERM after 3 s. Reported: frames sent, answered (result,
unavailable, other), lost (sent, never answered), the seconds to exit, and the server's log line
"shutting down: N clients, M frames in flight". docs/protocol.md promises every frame an answer.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness import hostile as hc  # noqa: E402
from bench_load import frame_jpeg, pct  # noqa: E402
from harness.server import (Client, dev_cmd, free_port, gunicorn_cmd, server_env, start, stop,  # noqa: E402
                             wait_healthy)


def good_client(port: int, jpeg: bytes, fps: float, stop_at: float, out: dict) -> None:
    """One frame in flight, at most ``fps`` a second; round trips in ms, errors by code."""
    try:
        c = Client(port)
    except Exception as e:  # noqa: BLE001
        out["errors"]["connect:" + type(e).__name__] = 1
        return
    try:
        while time.monotonic() < stop_at:
            t0 = time.monotonic()
            try:
                name, res = c.send(jpeg, timeout=30)
            except Exception as e:  # noqa: BLE001 - a lost answer or connection is an error too
                out["errors"][type(e).__name__] = out["errors"].get(type(e).__name__, 0) + 1
                break
            ms = (time.monotonic() - t0) * 1000
            if name == "result" and len(res["faces"]) == 1:
                out["rtt"].append(ms)
            else:
                code = res.get("code", "no_face") if isinstance(res, dict) else "?"
                out["errors"][code] = out["errors"].get(code, 0) + 1
            time.sleep(max(0.0, 1 / fps - (time.monotonic() - t0)))
    finally:
        c.close()


def attack_oversize(port: int, stop_at: float, tally: dict) -> None:
    while time.monotonic() < stop_at:
        status = hc.oversize_post(port, declared=3_000_000, timeout=10)
        tally["requests"] += 1
        tally[f"status {status}"] = tally.get(f"status {status}", 0) + 1


def attack_attachments(port: int, stop_at: float, tally: dict) -> None:
    while time.monotonic() < stop_at:
        sent, closed = hc.attachment_flood(port, declared=5_999_999, messages=20, size=1_000_000,
                                           seconds=max(0.5, min(10.0, stop_at - time.monotonic())))
        tally["connections"] += 1
        tally["MB sent"] = tally.get("MB sent", 0) + sent / 1e6
        tally["closed by the server"] = tally.get("closed by the server", 0) + bool(closed)


def attack_packets(port: int, stop_at: float, tally: dict) -> None:
    cases = list(hc.INVALID_PACKETS)
    i = 0
    while time.monotonic() < stop_at:
        closed = hc.invalid_packet(port, cases[i % len(cases)])
        i += 1
        tally["packets"] += 1
        tally["closed by the server"] = tally.get("closed by the server", 0) + bool(closed)


def attack_stalled(port: int, stop_at: float, tally: dict, sessions: int = 100) -> None:
    while time.monotonic() < stop_at:
        statuses = hc.stalled_bodies(port, sessions=sessions, declared=2_000_000, sent=1_900_000, timeout=30)
        tally["POSTs"] += len(statuses)
        for status in statuses:
            tally[f"status {status}"] = tally.get(f"status {status}", 0) + 1


# name -> (attack, what its tally counts, attacking threads: None for --attackers)
ATTACKS = {"none": None, "1 oversize polling POSTs": (attack_oversize, "requests", None),
           "2 attachment floods": (attack_attachments, "connections", None),
           "3 invalid packets": (attack_packets, "packets", None),
           "4 stalled polling bodies": (attack_stalled, "POSTs", 1)}


def run_phase(name, port, proc, log, jpeg, args) -> dict:
    web = hc.web_pid(proc.pid)
    rss0, lines0 = hc.rss_mb(web), len(log.read_bytes().splitlines())
    stop_at = time.monotonic() + args.seconds
    good = {"rtt": [], "errors": {}}
    threads = [threading.Thread(target=good_client, args=(port, jpeg, args.fps, stop_at, good))]
    tally = {}
    if ATTACKS[name] is not None:
        fn, unit, n = ATTACKS[name]
        tally[unit] = 0
        kw = {"sessions": args.stalled} if fn is attack_stalled else {}
        threads += [threading.Thread(target=fn, args=(port, stop_at, tally), kwargs=kw, daemon=True)
                    for _ in range(n or args.attackers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(args.seconds + 60)
    time.sleep(2.0)  # let the server finish closing what the attackers left
    import requests
    health = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code
    r = good["rtt"]
    return {"phase": name, "sent": {k: round(v, 1) if isinstance(v, float) else v for k, v in tally.items()},
            "close_wait": hc.close_wait(port), "rss_mb": [round(rss0), round(hc.rss_mb(web))], "healthz": health,
            "log_lines": len(log.read_bytes().splitlines()) - lines0,
            "good": {"frames": len(r), "errors": good["errors"], "p50": round(pct(r, 50), 1),
                     "p95": round(pct(r, 95), 1), "max": round(max(r), 1) if r else None}}


def _streamer(c: Client, jpeg: bytes, fps: float, stop: threading.Event, tally: dict) -> None:
    """Frames as the page sends them: one in flight, at most ``fps`` a second, none after an
    'unavailable' (the page waits 5 s: the server is gone by then)."""
    while not stop.is_set() and c.sio.connected:
        t0, n = time.monotonic(), len(c.answers())
        try:
            c.sio.emit("frame", jpeg)
        except Exception:  # noqa: BLE001 - disconnected meanwhile: that frame was never sent
            return
        tally["sent"] += 1
        while not c.wait_for(lambda a: len(a) > n, timeout=0.2):
            if not c.sio.connected:
                return
        name, data = c.answers()[n]
        if name == "error" and (data or {}).get("code") == "unavailable":
            return
        time.sleep(max(0.0, 1 / fps - (time.monotonic() - t0)))


def sigterm_case(server: str, models: str, frozen: bool, fps: float = 10.0) -> dict:
    """One server started, frames put in flight, SIGTERM: what became of each frame."""
    import re
    import signal
    import requests
    port = free_port()
    log = Path(tempfile.mkdtemp(prefix="bench_sigterm_")) / "server.log"
    cmd = gunicorn_cmd(port) if server == "gunicorn" else dev_cmd(port, models)
    proc = start(cmd, server_env(models), log)
    clients, tallies, threads, worker = [], [], [], None
    stop_streaming = threading.Event()
    try:
        wait_healthy(port, proc, log, timeout=300)
        jpeg = frame_jpeg()
        clients = [Client(port) for _ in range(4 if frozen else 5)]
        tallies = [{"sent": 0} for _ in clients]
        if frozen:
            worker = requests.get(f"http://127.0.0.1:{port}/admin/stats", timeout=10).json()["worker"]["pid"]
            os.kill(worker, signal.SIGSTOP)
            for c, t in zip(clients, tallies):
                c.sio.emit("frame", jpeg)
                t["sent"] += 1
            time.sleep(1.0)
        else:
            threads = [threading.Thread(target=_streamer, args=(c, jpeg, fps, stop_streaming, t), daemon=True)
                       for c, t in zip(clients, tallies)]
            for t in threads:
                t.start()
            time.sleep(3.0)
        t0 = time.monotonic()
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except Exception:  # noqa: BLE001 - reported as not exited
            pass
        took = time.monotonic() - t0 if proc.poll() is not None else None
        stop_streaming.set()
        for t in threads:
            t.join(10)
        for c, t in zip(clients, tallies):  # an answer sent before the close is still being handled
            c.wait_for(lambda a, n=t["sent"]: len(a) >= n, timeout=2.0)
    finally:
        stop_streaming.set()
        for c in clients:
            c.close()
        stop(proc)
        if worker is not None:
            try:
                os.kill(worker, signal.SIGKILL)
            except ProcessLookupError:
                pass
    answers = {}
    for c in clients:
        for name, data in c.answers():
            key = name if name == "result" else str((data or {}).get("code", "?"))
            answers[key] = answers.get(key, 0) + 1
    sent = sum(t["sent"] for t in tallies)
    said = re.search(r"shutting down: \d+ clients, \d+ frames in flight", log.read_text(errors="replace"))
    return {"server": server, "case": "frozen" if frozen else "load", "clients": len(clients), "sent": sent,
            "answers": answers, "lost": sent - sum(answers.values()),
            "exit_s": None if took is None else round(took, 2), "log": said.group(0) if said else None}


def sigterm_main(args) -> int:
    rows = []
    for server in ("gunicorn", "dev"):
        for frozen in (True, False):
            rows.append(sigterm_case(server, args.models, frozen, args.fps))
            print(rows[-1], file=sys.stderr, flush=True)
    print(f"\nSIGTERM with frames in flight, models {args.models}; {os.cpu_count()} CPUs\n")
    print("| server | case | clients | frames sent | answers | lost | exit s | server log |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        said = ", ".join(f"{k} {v}" for k, v in sorted(r["answers"].items())) or "-"
        print(f"| {r['server']} | {r['case']} | {r['clients']} | {r['sent']} | {said} | {r['lost']} | {r['exit_s']} "
              f"| {r['log']} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0 if all(r["lost"] == 0 for r in rows) else 1


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--server", choices=("gunicorn", "dev"), default="gunicorn")
    p.add_argument("--models", default=os.environ.get("FER_MODELS", str(ROOT / "models")))
    p.add_argument("--seconds", type=float, default=20.0, help="length of each phase")
    p.add_argument("--attackers", type=int, default=4, help="attacking threads per phase")
    p.add_argument("--fps", type=float, default=10.0, help="the good client's most frames per second")
    p.add_argument("--attacks", default="0,1,2,3,4", help="which phases, by number (0: no attack)")
    p.add_argument("--stalled", type=int, default=100, help="stalled bodies at once in attack 4")
    p.add_argument("--json", help="write the numbers here too")
    p.add_argument("--sigterm", action="store_true", help="instead of the attacks: SIGTERM with frames in flight, "
                                                          "on both servers")
    args = p.parse_args(argv)
    if args.sigterm:
        return sigterm_main(args)
    if args.seconds <= 0 or args.attackers < 1 or args.fps <= 0 or args.stalled < 1:
        p.error(f"--seconds, --attackers, --fps and --stalled must be positive, got {args.seconds}, {args.attackers}, "
                f"{args.fps}, {args.stalled}")
    names = list(ATTACKS)
    try:
        phases = [names[int(a)] for a in args.attacks.split(",")]
    except (ValueError, IndexError):
        p.error(f"--attacks: numbers 0-{len(names) - 1} separated by commas, got {args.attacks!r}")
    port = free_port()
    log = Path(tempfile.mkdtemp(prefix="bench_hostile_")) / "server.log"
    cmd = gunicorn_cmd(port) if args.server == "gunicorn" else dev_cmd(port, args.models)
    proc = start(cmd, server_env(args.models), log)
    rows = []
    try:
        wait_healthy(port, proc, log, timeout=300)
        jpeg = frame_jpeg()
        for name in phases:
            rows.append(run_phase(name, port, proc, log, jpeg, args))
            print(f"{name}: {rows[-1]}", file=sys.stderr, flush=True)
    finally:
        stop(proc)
    print(f"\nserver: {args.server}, models {args.models}, {args.seconds:g} s per phase, {args.attackers} attacking "
          f"threads, good client at most {args.fps:g} frames/s; {os.cpu_count()} CPUs\n")
    print("| attack | sent by the attackers | CLOSE_WAIT after | server RSS MB before → after | /healthz | log lines "
          "| good client: frames, errors | p50 / p95 / max ms |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        g = r["good"]
        sent = ", ".join(f"{k}: {v}" for k, v in r["sent"].items()) or "-"
        print(f"| {r['phase']} | {sent} | {r['close_wait']} | {r['rss_mb'][0]} → {r['rss_mb'][1]} | {r['healthz']} "
              f"| {r['log_lines']} | {g['frames']}, {sum(g['errors'].values())} {g['errors'] or ''} "
              f"| {g['p50']} / {g['p95']} / {g['max']} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
