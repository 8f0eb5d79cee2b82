"""The web app's settings: one dataclass, every default visible with its reason.

``WebConfig.from_env()`` reads the same settings from environment variables (the names are in
``ENV`` below), which is how ``gunicorn 'webapp:create_app()'`` is configured.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass


@dataclass
class WebConfig:
    models_dir: str | None = None        # None: $FER_MODELS, else models/ in the repo (fer_core.store)
    admin_secret: str | None = None      # needed for /admin from anywhere but localhost; None: remote refused
    admin_local_open: bool = True        # localhost (no proxy headers) may open /admin without the secret
    trust_proxy: int = 0                 # proxies in front (X-Forwarded-For hops to trust); 0: none
    max_frame_bytes: int = 1_000_000     # a 320 px JPEG is ~15-40 kB; 1 MB leaves room for 1080p stills
    transport_slack: float = 2.0         # the Socket.IO transport accepts this x the frame limit, so a
    #                                      frame a bit over our limit gets a polite 'too_large' error;
    #                                      far bigger messages are cut by the transport (disconnect)
    max_pixels: int = 2_100_000          # decoded frame size cap (1080p fits): bounds a batch's memory
    max_faces: int = 8                   # faces per frame: a webcam shows one or a few people
    max_fps: float = 30.0                # per-client frames/s cap; webcams deliver 30, the page sends <= this
    max_batch: int = 16                  # frames per inference call: the queue drained at once when busy
    warm_up_faces: int = 32              # compile every predict bucket up to this many faces (x2 with TTA)
    request_timeout: float = 30.0        # a frame not answered by then gets error 'timeout'
    worker_start_timeout: float = 300.0  # importing TensorFlow + loading + warming a big ensemble on a CPU
    worker_batch_timeout: float = 60.0   # a batch slower than this means a hung worker: killed, restarted
    worker_start: bool = True            # False: no inference worker (the admin page and static files only)
    async_mode: str | None = None        # None: 'eventlet' when the process is eventlet-patched, else 'threading'

    def __post_init__(self):
        if self.max_frame_bytes < 1 or self.max_fps <= 0 or self.max_batch < 1 or self.max_faces < 1:
            raise ValueError("max_frame_bytes, max_fps, max_batch and max_faces must be positive")
        if self.transport_slack < 1:
            raise ValueError(f"transport_slack must be >= 1, got {self.transport_slack!r}")
        if self.async_mode not in (None, "eventlet", "threading"):
            raise ValueError(f"async_mode must be None, 'eventlet' or 'threading', got {self.async_mode!r}")
        if self.admin_secret == "":
            self.admin_secret = None

    @property
    def transport_max_bytes(self) -> int:
        """Socket.IO's max_http_buffer_size: the frame limit with slack for packet framing and politeness."""
        return int(self.max_frame_bytes * self.transport_slack) + 4096

    @classmethod
    def from_env(cls, env=None, **overrides) -> "WebConfig":
        """Defaults, then environment variables (``ENV``), then ``overrides``."""
        env = os.environ if env is None else env
        kw = {}
        for field in dataclasses.fields(cls):
            name = ENV.get(field.name)
            if name and env.get(name) not in (None, ""):
                kw[field.name] = _parse(field, env[name], name)
        kw.update(overrides)
        return cls(**kw)


# Environment variable for each setting.
ENV = {
    "models_dir": "FER_MODELS",
    "admin_secret": "FER_ADMIN_SECRET",
    "admin_local_open": "FER_ADMIN_LOCAL_OPEN",
    "trust_proxy": "FER_TRUST_PROXY",
    "max_frame_bytes": "FER_MAX_FRAME_BYTES",
    "max_pixels": "FER_MAX_PIXELS",
    "max_faces": "FER_MAX_FACES",
    "max_fps": "FER_MAX_FPS",
    "max_batch": "FER_MAX_BATCH",
    "warm_up_faces": "FER_WARM_UP_FACES",
    "request_timeout": "FER_REQUEST_TIMEOUT",
    "worker_start_timeout": "FER_WORKER_START_TIMEOUT",
    "worker_batch_timeout": "FER_WORKER_BATCH_TIMEOUT",
    "async_mode": "FER_ASYNC_MODE",
}


def _parse(field: dataclasses.Field, raw: str, name: str):
    kind = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", str(field.type))
    try:
        if kind.startswith("bool"):
            low = raw.strip().lower()
            if low not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ValueError(raw)
            return low in ("1", "true", "yes", "on")
        if kind.startswith("int"):
            return int(raw)
        if kind.startswith("float"):
            return float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r}: expected {kind.split(' ')[0]}") from None
    return raw
