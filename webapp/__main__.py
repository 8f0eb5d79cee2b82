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
_STOPPING = False  # a stop signal came: the next ones only say so
SOCKET_TIMEOUT = 60.0  # eventlet's reads of a request (line, headers, body) end after this: none parks forever


def _stop(signum, frame):
    """SIGTERM or Ctrl-C ends the server, and the inference worker is closed.

    The handler runs in whichever greenlet was active when the signal came: raising there could end
    a request's greenlet (seen: a Socket.IO disconnect handler logged the KeyboardInterrupt and the
    server went on). So the hub throws it into the main greenlet instead. Only the first signal
    does: the stop is bounded (``shutdown_timeout``), and a second one thrown into it (Ctrl-C pressed
    twice, or ``make run`` passing its own SIGTERM on to the server) cut it short with a traceback
    and frames unanswered."""
    global _STOPPING
    if _STOPPING:
        print("already stopping: the frames in flight are being answered", file=sys.stderr, flush=True)
        return
    _STOPPING = True
    from eventlet import hubs
    hubs.get_hub().schedule_call_global(0, _MAIN.throw, KeyboardInterrupt)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m webapp", description=__doc__,
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
    global _MAIN
    import greenlet
    _MAIN = greenlet.getcurrent()
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    tls = {"certfile": args.certfile, "keyfile": args.keyfile} if args.certfile else {}
    try:
        app.extensions["socketio"].run(app, host=args.host, port=args.port, log_output=args.access_log,
                                       socket_timeout=SOCKET_TIMEOUT, **tls)
    except KeyboardInterrupt:
        pass
    finally:
        lifecycle.shutdown(app)  # answers the frames in flight, closes the clients and the worker
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
