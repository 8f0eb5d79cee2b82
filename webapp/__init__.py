"""The facial-expression web app: a live camera page, an admin page, frames over Socket.IO.

    python -m webapp [--host H] [--port P] [--models DIR] [--certfile F --keyfile K]
    gunicorn -k eventlet -w 1 --no-control-socket --bind ADDRESS:PORT 'webapp:create_app()'

The second is the shared server (docs/webapp.md says why each option; harness.server.gunicorn_cmd
starts it for the tests and benchmarks); FER_* environment variables configure both (webapp/config.py).

Exports ``create_app(config=None)`` (the factory; each app carries its own SocketIO at
``app.extensions['socketio']``) and ``WebConfig``. They live in ``webapp.app`` and ``webapp.config``
and are loaded on first use (PEP 562), so that importing this package imports nothing else:
``python -m webapp`` can monkey-patch with eventlet before Flask is imported, and the inference worker
(``python -m webapp.worker``) never loads Flask.
"""

__all__ = ["create_app", "WebConfig"]


def __getattr__(name):
    if name == "create_app":
        from .app import create_app
        return create_app
    if name == "WebConfig":
        from .config import WebConfig
        return WebConfig
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
