"""python -m webapp [--host H] [--port P] [--models DIR] [--certfile F --keyfile K]

The same stack as the shared server (eventlet), on one machine: 127.0.0.1:5000 by default. Browsers
allow the camera only on https:// or on localhost; to open the page from another device, serve it
over HTTPS (--certfile/--keyfile) or put it behind an HTTPS proxy (see docs/protocol.md).
"""
import warnings

warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")  # pinned on purpose: docs/webapp.md
import eventlet  # noqa: E402

eventlet.monkey_patch()  # first: threading, queue, subprocess and sockets become green

import argparse  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402


_MAIN = None  # the main greenlet, where socketio.run() serves
_APP = None  # the app being served, stopped by the first stop signal
_STOPPING = False  # a stop signal came: the next ones only say so
SOCKET_TIMEOUT = 60.0  # eventlet's reads of a request (line, headers, body) end after this: none parks forever


def _stop(signum, frame):
    """SIGTERM or Ctrl-C ends the server, and the inference worker is closed.

    The app's shutdown (the frames in flight answered, every client disconnected, the worker
    stopped) runs first, in a green thread of its own, and only then is the server's accept loop
    ended: eventlet.wsgi.server, on leaving it, shuts down every connection it counts as idle, and a
    WebSocket counts as idle. Ending the loop first cut every client off with its frame unanswered
    before the shutdown could count it.

    The handler runs in whichever greenlet was active when the signal came, where nothing may block
    or switch: it only schedules that work. Raising there could end a request's greenlet (seen: a
    Socket.IO disconnect handler logged the KeyboardInterrupt and the server went on), so the hub
    throws it into the main greenlet instead. Only the first signal does: the stop is bounded
    (``shutdown_timeout``), and a second one thrown into it (Ctrl-C pressed twice, or ``make run``
    passing its own SIGTERM on to the server) cut it short with a traceback and frames unanswered."""
    global _STOPPING
    if _STOPPING:
        print("already stopping: the frames in flight are being answered", file=sys.stderr, flush=True)
        return
    _STOPPING = True
    eventlet.spawn_n(_shut_down_then_end_serving)


def _shut_down_then_end_serving() -> None:
    from eventlet import hubs
    from webapp import lifecycle
    try:
        lifecycle.shutdown(_APP)
    finally:
        hubs.get_hub().schedule_call_global(0, _MAIN.throw, KeyboardInterrupt)


def live() -> int:
    """The `fer-live` command that `pip install .` makes (pyproject.toml)."""
    return main(prog="fer-live")


def main(argv=None, prog: str = "python -m webapp") -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    p = argparse.ArgumentParser(prog=prog, description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=5000, help="port (default 5000)")
    p.add_argument("--models", help="models folder (default: $FER_MODELS, else models/)")
    p.add_argument("--certfile", help="TLS certificate (PEM) to serve HTTPS")
    p.add_argument("--keyfile", help="TLS private key (PEM)")
    p.add_argument("--access-log", action="store_true", help="log each HTTP request (paths only)")
    args = p.parse_args(argv)
    if bool(args.certfile) != bool(args.keyfile):
        p.error("--certfile and --keyfile go together")

    from fer_core.store import ModelsError
    from webapp import WebConfig, create_app, lifecycle

    try:
        cfg = WebConfig.from_env(**({"models_dir": args.models} if args.models else {}))
        app = create_app(cfg)
    except (ModelsError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    scheme = "https" if args.certfile else "http"
    print(f"FER web app on {scheme}://{args.host}:{args.port}/ (admin: /admin); the model is loading, "
          f"/healthz says when it is ready", file=sys.stderr, flush=True)
    global _MAIN, _APP
    import greenlet
    _MAIN, _APP = greenlet.getcurrent(), app
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    tls = {"certfile": args.certfile, "keyfile": args.keyfile} if args.certfile else {}
    try:
        app.extensions["socketio"].run(app, host=args.host, port=args.port, log_output=args.access_log,
                                       socket_timeout=SOCKET_TIMEOUT, **tls)
    except KeyboardInterrupt:
        pass
    finally:
        lifecycle.shutdown(app)  # done already after a stop signal; else (the server failed) now
    return 0


if __name__ == "__main__":
    sys.exit(main())
