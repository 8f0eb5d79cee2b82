"""The web app's settings: one dataclass, every default visible with its reason.

``WebConfig.from_env()`` reads them from environment variables, which is how
``gunicorn ... 'webapp:create_app()'`` is configured. Two groups, two mappings, two tables in
docs/webapp.md: ``OPERATOR_ENV``, what whoever runs a server for a class may set (its models folder,
its names and proxies, its admin secret, its limits, what runs the model, the explanations), and
``TUNING_ENV``, the knobs that the benchmarks turn (docs/benchmarks.md) and whose defaults are what
they measured best. ``WebConfig.worker()`` is the inference worker's part of them, a frozen
``WorkerConfig`` without defaults of its own.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass

from fer_core.config import DEFAULT_DETECTOR, DETECTORS, MAX_FACES, ONE_VIEW_FROM, PREP_CHUNKS
from fer_core.runtime import DEFAULT_PRECISION, DEFAULT_RUNTIME, PRECISION_ENV, RUNTIME_ENV, check_choice
from fer_core.store import MODELS_ENV
from fer_core.track import REDETECT_EVERY, STILL_LEVELS
from fer_core.tta import TTA, resolve as resolve_tta

from .guard import parse_hosts, parse_networks

# The Socket.IO transport (and the guard's body limit) accepts this many times the frame limit, so
# that a frame a bit over max_frame_bytes reaches the handler and gets a polite 'too_large' error;
# far bigger messages are cut by the transport (a disconnect). A constant, not a setting: it is a
# property of the protocol's error handling, not of a classroom.
TRANSPORT_SLACK = 2.0


@dataclass
class WebConfig:
    # ---- the operator's settings (OPERATOR_ENV) ----
    models_dir: str | None = None        # None: $FER_MODELS, else the shipped models/, read by
    #                                      fer_core.store.resolve_models_dir as for every entry point
    admin_secret: str | None = None      # needed for /admin from anywhere but localhost; None: remote refused
    admin_local_open: bool = True        # localhost (no proxy headers) may open /admin without the secret
    # -- who may connect, through what (webapp/guard.py, webapp/security.py) --
    allowed_hosts: str | None = None     # Host names served besides localhost/127.0.0.1/[::1] on the server's
    #                                      own port: 'name' (any port), 'name:port', '*' (any); DNS rebinding
    cors_origins: str | None = None      # Socket.IO origins allowed besides this server's own: None (same
    #                                      origin only), '*' (any), or a comma-separated list of origins
    trust_proxy: int = 0                 # proxies in front (X-Forwarded-For hops to trust); 0: none
    trusted_proxies: str = "127.0.0.0/8,::1"  # peers whose X-Forwarded-* headers count (trust_proxy hops)
    message_queue: str | None = None     # e.g. redis://127.0.0.1:6379/0: several server processes behind a
    #                                      sticky proxy share it (Flask-SocketIO's message queue); None: one process
    # -- limits --
    max_clients: int = 60                # clients served at once (2 cores carry 60 at 2+ results/s each, docs/
    #                                      classroom.md); later ones wait in line, first come first served, and
    #                                      their frames get 'full' (webapp/seats.py); 0: no limit
    max_fps: float = 30.0                # per-client frames/s cap; webcams deliver 30, the page sends <= this
    max_frame_bytes: int = 1_000_000     # a 320 px JPEG is ~15-40 kB; 1 MB leaves room for 1080p stills
    max_faces: int = MAX_FACES           # faces per frame (fer_core.config)
    # -- what runs the model (docs/benchmarks.md) --
    runtime: str = DEFAULT_RUNTIME       # what runs the members: tensorflow|litert|onnx; auto (with precision
    #                                      auto): the fastest timed at start among those runtimes.json admits
    #                                      (fer_core/runtime.py choose; docs/benchmarks.md); a name forces it
    precision: str = DEFAULT_PRECISION   # of an exported runtime: float32|float16|int8; auto: measured, as above
    tta: TTA | None = None               # test-time views: a fer_core.tta.MODES name (fer_core/tta.py; 1/0 mean
    #                                      flip/none); None: ensemble.json's, chosen with the ensemble on
    #                                      PublicTest. 'none' halves a face's model time, see benchmarks
    detector: str = DEFAULT_DETECTOR     # face detector (fer_core.config.DETECTORS). BlazeFace finds 100 % of the
    #                                      faces rolled +-30 deg in bench_detector's set (Haar: 0 %), gives the eyes
    #                                      that level the crop; followed faces by its short-range model (bench_near)
    # -- "Why?": what the network saw (fer_core/explain.py, docs/protocol.md 'why') --
    explain: bool = True                 # answer 'why' requests (Grad-CAM); False: 'unavailable'
    why_interval: float = 2.0            # one 'why' per client per this many seconds: each costs a few
    #                                      frames' worth of CPU (docs/benchmarks.md), and the page's
    #                                      classroom use is a click now and then, not a stream
    # -- the teacher's class view on /admin (webapp/classview.py; docs/classroom.md) --
    class_window: float = 10.0           # a client counts in the current distribution this long after its last answer

    # ---- for benchmarks and tuning (TUNING_ENV): the defaults are what docs/benchmarks.md measured ----
    # -- the inference worker's batches and threads --
    max_batch_frames: int = 16           # frames per inference call: the queue drained at once when busy
    max_pixels: int = 2_100_000          # decoded frame size cap (1080p fits): bounds a batch's memory
    warm_up_faces: int = 32              # compile every predict bucket up to this many faces (x2 with TTA)
    tf_threads: int = 0                  # TensorFlow threads in the inference worker; 0: TensorFlow's default
    detector_threads: int = 1            # BlazeFace's LiteRT threads: one, the ensemble runs on the other core
    prep_chunks: int = PREP_CHUNKS       # the worker decodes part k+1 of a batch while the ensemble runs on part k
    #                                      (both cores busy); 0 or 1: decode the whole batch first
    # -- following faces and spreading views over frames (fer_core/track.py, fer_core/spread.py) --
    track_every: int = REDETECT_EVERY    # follow each client's faces near their last boxes, searching the whole
    #                                      frame every N frames or when a face is lost (fer_core/track.py); 0: off
    track_still: float = STILL_LEVELS    # grey levels: a followed face (or a frame) whose block means all moved less
    #                                      than this since its last search is not searched again (fer_core/track.py:
    #                                      webcam noise moves them 1-3 levels, a quarter-pixel shift 5); 0: off
    spread_views: bool = True            # a followed face gets one test-time view a frame, averaged with the other
    #                                      views from its last frame (fer_core/spread.py): one view's cost, and on
    #                                      a still face exactly the ensemble's own views' answer; needs track_every
    one_view_from: int = ONE_VIEW_FROM   # frames in one batch (each a client waiting) that make a class, not a demo:
    #                                      from it on, a face gets one view at most, a new face its first only
    #                                      (0.8 pp below zoom-flip on PrivateTest for that frame); 0: never
    # -- the explainer process --
    explain_threads: int = 1             # TensorFlow threads of the explainer process: one core at most,
    #                                      so that a 'why' never takes both cores from the frames
    explain_nice: int = 10               # the explainer process's niceness: the frame worker (nice 0)
    #                                      gets the CPU first when both want it
    # -- timeouts and the worker's watchdog (webapp/inference.py, webapp/heartbeat.py, webapp/lifecycle.py) --
    request_timeout: float = 30.0        # a frame not answered by then gets error 'timeout'
    worker_start_timeout: float = 300.0  # importing TensorFlow + loading + warming a big ensemble on a CPU
    worker_batch_timeout: float = 60.0   # a batch slower than this means a hung worker: killed, restarted
    worker_heartbeat_timeout: float = 10.0  # a ready worker silent this long is killed and restarted; 0: never
    worker_unresponsive_after: float = 2.0  # ... and silent this long (4 missed beats) it reads 'unresponsive' on
    #                                      /healthz and frames get 'starting' instead of queueing behind it; 0: never
    shutdown_timeout: float = 3.0        # on SIGTERM, the worker gets this long to answer the frames it holds
    # -- the waiting line, the class view's timeline, abuse --
    full_retry: float = 2.0              # seconds a waiting client is told to wait before its next frame: a
    #                                      place in line moves when a student leaves, not every frame
    class_bucket: float = 10.0           # the timeline's period: each client counted once per period
    class_buckets: int = 30              # periods kept (30 x 10 s: the last 5 minutes), a fixed ring
    max_violations: int = 20             # a client that breaks the protocol (oversize, flooding, bad payloads)
    violation_window: float = 10.0       # more than this many times within this many seconds is disconnected;
    #                                      max_violations 0: never
    admin_max_failures: int = 10         # wrong admin passwords from one address within the window ...
    admin_failure_window: float = 300.0  # ... lock that address out (429 + Retry-After) until they age out

    # ---- in code only (tests) ----
    worker_start: bool = True            # False: no inference worker (the admin page and static files only)

    def __post_init__(self):
        if self.max_frame_bytes < 1 or self.max_fps <= 0 or self.max_batch_frames < 1 or self.max_faces < 1:
            raise ValueError("max_frame_bytes, max_fps, max_batch_frames and max_faces must be positive, got "
                             f"{self.max_frame_bytes!r}, {self.max_fps!r}, {self.max_batch_frames!r}, {self.max_faces!r}")
        if self.max_clients < 0 or not self.full_retry > 0:
            raise ValueError(f"max_clients must be >= 0 and full_retry > 0, got {self.max_clients!r}, {self.full_retry!r}")
        if self.admin_secret == "":
            self.admin_secret = None
        if self.message_queue == "":
            self.message_queue = None
        if self.tf_threads < 0 or self.max_violations < 0 or self.admin_max_failures < 0:
            raise ValueError(f"tf_threads, max_violations and admin_max_failures must be >= 0, got "
                             f"{self.tf_threads!r}, {self.max_violations!r}, {self.admin_max_failures!r}")
        check_choice(self.runtime, self.precision)
        if self.prep_chunks < 0:
            raise ValueError(f"prep_chunks must be >= 0, got {self.prep_chunks!r}")
        if self.why_interval < 0 or self.explain_threads < 0 or not 0 <= self.explain_nice <= 19:
            raise ValueError(f"why_interval and explain_threads must be >= 0 and explain_nice in 0..19, got "
                             f"{self.why_interval!r}, {self.explain_threads!r}, {self.explain_nice!r}")
        if self.detector not in DETECTORS:
            raise ValueError(f"detector must be one of {', '.join(DETECTORS)}, got {self.detector!r}")
        if self.detector_threads < 1:
            raise ValueError(f"detector_threads must be >= 1, got {self.detector_threads!r}")
        if self.track_every < 0:
            raise ValueError(f"track_every must be >= 0, got {self.track_every!r}")
        if not self.track_still >= 0:
            raise ValueError(f"track_still must be >= 0, got {self.track_still!r}")
        if self.one_view_from < 0:
            raise ValueError(f"one_view_from must be >= 0, got {self.one_view_from!r}")
        if self.class_window <= 0 or self.class_bucket <= 0 or self.class_buckets < 1:
            raise ValueError(f"class_window and class_bucket must be positive and class_buckets >= 1, got "
                             f"{self.class_window!r}, {self.class_bucket!r}, {self.class_buckets!r}")
        if self.violation_window <= 0 or self.admin_failure_window <= 0:
            raise ValueError(f"violation_window and admin_failure_window must be positive, got "
                             f"{self.violation_window!r}, {self.admin_failure_window!r}")
        if self.tta is not None:  # FER_TTA was a boolean switch before it named a mode: 1/0 still work
            word = str(self.tta).strip().lower()
            self.tta = resolve_tta(_BOOLEAN.get(word, self.tta) if isinstance(self.tta, str) else self.tta)
        self.cors_allowed_origins  # raises ValueError on a malformed list
        # -- hostile clients --
        parse_hosts(self.allowed_hosts)
        parse_networks(self.trusted_proxies)
        if self.worker_heartbeat_timeout < 0 or self.shutdown_timeout < 0 or self.worker_unresponsive_after < 0:
            raise ValueError(f"worker_heartbeat_timeout, worker_unresponsive_after and shutdown_timeout must be >= 0, "
                             f"got {self.worker_heartbeat_timeout!r}, {self.worker_unresponsive_after!r}, "
                             f"{self.shutdown_timeout!r}")
        if self.worker_heartbeat_timeout and self.worker_unresponsive_after > self.worker_heartbeat_timeout:
            raise ValueError(f"worker_unresponsive_after ({self.worker_unresponsive_after!r}) must not exceed "
                             f"worker_heartbeat_timeout ({self.worker_heartbeat_timeout!r}): the worker would be "
                             f"replaced before it reads unresponsive")

    @property
    def cors_allowed_origins(self):
        """Socket.IO's cors_allowed_origins: None (same origin), '*' or a list of origins."""
        raw = (self.cors_origins or "").strip()
        if not raw:
            return None
        if raw == "*":
            return "*"
        origins = [o.strip().rstrip("/") for o in raw.split(",") if o.strip()]
        for o in origins:
            if not o.startswith(("http://", "https://")) or "/" in o.split("://", 1)[1]:
                raise ValueError(f"cors_origins: {o!r} is not an origin like https://example.org[:port]")
        return origins

    @property
    def transport_max_bytes(self) -> int:
        """Socket.IO's max_http_buffer_size: the frame limit with slack for packet framing and politeness."""
        return int(self.max_frame_bytes * TRANSPORT_SLACK) + 4096

    def worker(self, models_dir) -> "WorkerConfig":
        """The inference worker's settings (the fields of ``WorkerConfig``), for ``models_dir``."""
        mine = {f.name: getattr(self, f.name) for f in dataclasses.fields(WorkerConfig) if f.name != "models_dir"}
        return WorkerConfig(models_dir=str(models_dir), **mine)

    def explainer(self, models_dir) -> "WorkerConfig":
        """The explainer process's settings: the worker's, with its own thread count, and small
        batches (a 'why' is one face)."""
        return dataclasses.replace(self.worker(models_dir), tf_threads=self.explain_threads, max_batch_frames=4)

    @classmethod
    def from_env(cls, env=None, **overrides) -> "WebConfig":
        """Defaults, then environment variables (``OPERATOR_ENV``, ``TUNING_ENV``), then ``overrides``.
        The models folder is left to ``fer_core.store.resolve_models_dir`` (``models_dir`` None), the
        one reader of $FER_MODELS for every entry point."""
        env = os.environ if env is None else env
        for name, why in RETIRED_ENV.items():
            if env.get(name) not in (None, ""):
                raise ValueError(f"{name}={env[name]!r} is no longer a setting: {why}")
        kw = {}
        for field in dataclasses.fields(cls):
            name = ENV.get(field.name)
            if name and env.get(name) not in (None, ""):
                kw[field.name] = _parse(field, env[name], name)
        kw.update(overrides)
        return cls(**kw)


@dataclass(frozen=True)
class WorkerConfig:
    """The inference worker's settings, taken from a WebConfig once (``WebConfig.worker``): the web
    process's dispatcher reads the batch size and the timeouts, the worker process gets all of it
    once, as JSON on its command line. No defaults here: WebConfig holds them, under the same names."""
    models_dir: str
    max_batch_frames: int
    max_faces: int
    max_pixels: int
    warm_up_faces: int
    tta: TTA | None                      # None: the models folder's ensemble.json says
    tf_threads: int
    worker_start_timeout: float
    worker_batch_timeout: float
    worker_heartbeat_timeout: float      # the web process's watchdog reads it; the worker only beats
    worker_unresponsive_after: float     # the web process only
    runtime: str
    precision: str
    prep_chunks: int
    detector: str
    detector_threads: int
    track_every: int
    track_still: float
    spread_views: bool
    one_view_from: int
    explain_nice: int                    # the explainer process (webapp.worker --explain) only

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "WorkerConfig":
        try:
            d = json.loads(text)
            return cls(**dict(d, tta=None if d["tta"] is None else resolve_tta(d["tta"])))
        except (ValueError, TypeError, KeyError) as e:
            raise ValueError(f"not a worker config ({type(e).__name__}: {e}): {text[:200]!r}") from None


# What whoever runs a server sets: one environment variable per setting (docs/webapp.md, "Settings").
# The models folder's, FER_MODELS (fer_core.store.MODELS_ENV), is not read here: models_dir stays None
# and fer_core.store.resolve_models_dir reads it, as for the CLI, the API and train_all.py.
OPERATOR_ENV = {
    "admin_secret": "FER_ADMIN_SECRET",
    "admin_local_open": "FER_ADMIN_LOCAL_OPEN",
    "allowed_hosts": "FER_ALLOWED_HOSTS",
    "cors_origins": "FER_CORS_ORIGINS",
    "trust_proxy": "FER_TRUST_PROXY",
    "trusted_proxies": "FER_TRUSTED_PROXIES",
    "message_queue": "FER_MESSAGE_QUEUE",
    "max_clients": "FER_MAX_CLIENTS",
    "max_fps": "FER_MAX_FPS",
    "max_frame_bytes": "FER_MAX_FRAME_BYTES",
    "max_faces": "FER_MAX_FACES",
    "runtime": RUNTIME_ENV,
    "precision": PRECISION_ENV,
    "tta": "FER_TTA",
    "detector": "FER_DETECTOR",
    "explain": "FER_EXPLAIN",
    "why_interval": "FER_WHY_INTERVAL",
    "class_window": "FER_CLASS_WINDOW",
}
# Every operator variable, the models folder's included: what the operator table documents.
OPERATOR_VARIABLES = (MODELS_ENV, *OPERATOR_ENV.values())

# For benchmarks and tuning (docs/webapp.md, "For benchmarks and tuning"): the benchmarks start
# servers with them (bench/bench_load.py --env); a classroom keeps the defaults.
TUNING_ENV = {
    "max_batch_frames": "FER_MAX_BATCH",
    "max_pixels": "FER_MAX_PIXELS",
    "warm_up_faces": "FER_WARM_UP_FACES",
    "tf_threads": "FER_TF_THREADS",
    "detector_threads": "FER_DETECTOR_THREADS",
    "prep_chunks": "FER_PREP_CHUNKS",
    "track_every": "FER_TRACK_EVERY",
    "track_still": "FER_TRACK_STILL",
    "spread_views": "FER_SPREAD_VIEWS",
    "one_view_from": "FER_ONE_VIEW_FROM",
    "explain_threads": "FER_EXPLAIN_THREADS",
    "explain_nice": "FER_EXPLAIN_NICE",
    "request_timeout": "FER_REQUEST_TIMEOUT",
    "worker_start_timeout": "FER_WORKER_START_TIMEOUT",
    "worker_batch_timeout": "FER_WORKER_BATCH_TIMEOUT",
    "worker_heartbeat_timeout": "FER_WORKER_HEARTBEAT_TIMEOUT",
    "worker_unresponsive_after": "FER_WORKER_UNRESPONSIVE_AFTER",
    "shutdown_timeout": "FER_SHUTDOWN_TIMEOUT",
    "full_retry": "FER_FULL_RETRY",
    "class_bucket": "FER_CLASS_BUCKET",
    "class_buckets": "FER_CLASS_BUCKETS",
    "max_violations": "FER_MAX_VIOLATIONS",
    "violation_window": "FER_VIOLATION_WINDOW",
    "admin_max_failures": "FER_ADMIN_MAX_FAILURES",
    "admin_failure_window": "FER_ADMIN_FAILURE_WINDOW",
}
ENV = {**OPERATOR_ENV, **TUNING_ENV}  # every variable that from_env reads, by setting

# Settings that are gone, and what took their place: a server started with one of them says so
# instead of silently running otherwise than its operator thinks.
RETIRED_ENV = {
    "FER_LOAD_VIEWS": "under load (FER_ONE_VIEW_FROM) a face gets one view, the next of the ensemble's own "
                      "(FER_SPREAD_VIEWS), a new face the first; unset it",
    "FER_LOAD_VIEWS_FROM": "it is called FER_ONE_VIEW_FROM now, as the frame pipeline's one_view_from",
    "FER_ASYNC_MODE": "the async mode follows the process: eventlet where it is eventlet-patched (gunicorn -k "
                      "eventlet, python -m webapp), else threading (webapp/eventlet_env.py); unset it",
}


# How an environment variable says yes or no.
_BOOLEAN = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


def _parse(field: dataclasses.Field, raw: str, name: str):
    kind = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", str(field.type))
    try:
        if kind.startswith("bool"):
            low = raw.strip().lower()
            if low not in _BOOLEAN:
                raise ValueError(raw)
            return _BOOLEAN[low]
        if kind.startswith("int"):
            return int(raw)
        if kind.startswith("float"):
            return float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r}: expected {kind.split(' ')[0]}") from None
    return raw
