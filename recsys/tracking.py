"""Experiment tracking: a thin MLflow wrapper with a no-op twin.

The trainer, the CLI and the tuner talk to a :class:`Tracker`; :func:`make_tracker` returns an
:class:`MlflowTracker` when tracking is on and a :class:`NullTracker` for ``--no-tracking``.

Choices worth knowing:

- The tracking URI is explicit: an argument, else ``$RECSYS_TRACKING_URI``, else
  ``sqlite:///<output_dir>/mlflow.db``; never MLflow's working-directory default.
- :func:`check_tracking_uri` is a pre-flight check run *before* training, so an unreachable
  server or an unwritable store fails in seconds with a :class:`~recsys.errors.TrackingError`
  instead of after an hour of training (MLflow's own HTTP client retries for minutes).
- :class:`MlflowTracker` drives an ``mlflow.MlflowClient`` instance, not MLflow's fluent API, so
  it never reads or changes the process-global tracking URI or active run; several trackers
  can be open at once (the tuner's parent run and its trials' child runs).
- For a sqlite store, artifacts go next to the database (``<db folder>/mlartifacts/``) rather
  than into ``./mlruns`` of whatever the working directory happens to be.
- Metric and param names are made legal for MLflow by :func:`sanitize_key`
  (``val/ndcg@10`` -> ``val/ndcg_at_10``).
- Once a run is open, tracking is best effort: the first failure to record something (the
  server went away, the disk filled up) is logged once as a warning and the rest of that run
  is not sent to MLflow, so training goes on and its results still land in the run folder.

``mlflow`` is imported lazily, so importing this module (and running ``recsys --help``) stays
cheap.
"""

from __future__ import annotations

import base64
import logging
import os
import re
import shlex
import ssl
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable
from urllib.parse import urlsplit, urlunsplit

import yaml

from recsys.errors import TrackingError
from recsys.jsonio import dumps_json

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = [
    "ENV_TRACKING_URI",
    "MAX_KEY_LENGTH",
    "MAX_PARAM_VALUE_LENGTH",
    "MlflowTracker",
    "NullTracker",
    "Tracker",
    "check_tracking_uri",
    "default_tracking_uri",
    "flatten_params",
    "make_tracker",
    "redact_uri",
    "resolve_tracking_uri",
    "sanitize_key",
]

log = logging.getLogger(__name__)

ENV_TRACKING_URI = "RECSYS_TRACKING_URI"
"""Environment variable naming the tracking URI when none is given explicitly."""

MAX_KEY_LENGTH = 250
"""MLflow's limit on metric, param and tag key length (``MAX_ENTITY_KEY_LENGTH``)."""

MAX_PARAM_VALUE_LENGTH = 6000
"""MLflow's limit on a param value's length (``MAX_PARAM_VAL_LENGTH``)."""

_MAX_TAG_VALUE_LENGTH = 8000  # MLflow's MAX_TAG_VAL_LENGTH

_MAX_PARAMS_PER_BATCH = 100  # MLflow's MAX_PARAMS_TAGS_PER_BATCH
_MAX_METRICS_PER_BATCH = 1000  # MLflow's MAX_METRICS_PER_BATCH
_TERMINAL_STATUSES = ("FINISHED", "FAILED", "KILLED")
_ARTIFACT_FOLDER = "mlartifacts"
_PARENT_RUN_TAG = "mlflow.parentRunId"
_BAD_KEY_CHARS = re.compile(r"[^/\w.\- ]")
_SEARCH_PATH = "/api/2.0/mlflow/experiments/search?max_results=1"
_NO_TRACKING_HINT = "start it or pass --no-tracking"


# --------------------------------------------------------------------------- the interface


@runtime_checkable
class Tracker(Protocol):
    """What the trainer, the CLI and the tuner need from an experiment tracker.

    ``run_id`` is None until :meth:`start` (and always for :class:`NullTracker`); it keeps its
    value after :meth:`end` so callers can report it.
    """

    run_id: str | None

    def start(
        self, run_name: str, params: dict[str, Any], tags: dict[str, str] | None = None
    ) -> None:
        """Open a run named ``run_name`` and log ``params`` (flattened) and ``tags`` once."""
        ...

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        """Log numeric ``metrics`` at ``step`` (0 when None)."""
        ...

    def log_dict(self, obj: dict[str, Any], artifact_file: str) -> None:
        """Store ``obj`` as a YAML (``.yaml``/``.yml``) or JSON artifact at ``artifact_file``."""
        ...

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        """Store a local file or folder as an artifact, under ``artifact_path`` if given."""
        ...

    def end(self, status: str = "FINISHED") -> None:
        """Close the run with ``status`` (``FINISHED``, ``FAILED`` or ``KILLED``)."""
        ...

    def __enter__(self) -> Tracker:
        """Return the tracker itself."""
        ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """End an open run: FINISHED, or FAILED/KILLED if an exception is propagating."""
        ...


class NullTracker:
    """A tracker that records nothing (``--no-tracking``); every method is a no-op."""

    def __init__(self) -> None:
        """Create the no-op tracker; its ``run_id`` is always None."""
        self.run_id: str | None = None

    def start(
        self, run_name: str, params: dict[str, Any], tags: dict[str, str] | None = None
    ) -> None:
        """Do nothing."""

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        """Do nothing."""

    def log_dict(self, obj: dict[str, Any], artifact_file: str) -> None:
        """Do nothing."""

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        """Do nothing."""

    def end(self, status: str = "FINISHED") -> None:
        """Do nothing (``status`` is still validated, to catch typos early)."""
        _check_status(status)

    def __enter__(self) -> NullTracker:
        """Return the tracker itself."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Do nothing; exceptions propagate."""

    def __repr__(self) -> str:
        """Describe the tracker."""
        return "NullTracker()"


# --------------------------------------------------------------------------- names and params


def sanitize_key(name: str) -> str:
    """Make ``name`` a legal MLflow metric, param or tag key.

    MLflow accepts only ``[/\\w.\\- ]`` in names, rejects names that are not a normalized
    relative path (``a//b``, ``/a``, ``a/``, ``./a``, ``..``) and keys over 250 characters.
    ``@`` becomes ``_at_`` (``ndcg@10`` -> ``ndcg_at_10``), any other illegal character
    (including ``:``, legal in MLflow except on Windows) becomes ``_``, empty, ``.`` and
    ``..`` path segments are dropped or escaped, and the result is cut to 250 characters.
    Legal keys come back unchanged.
    """
    key = _BAD_KEY_CHARS.sub("_", str(name).replace("@", "_at_"))
    key = _normalize_segments(key)[:MAX_KEY_LENGTH]
    # cutting may leave a trailing "/" or a "."/".." segment at the end
    return _normalize_segments(key)


def _normalize_segments(key: str) -> str:
    """Drop empty and ``.`` segments of a slash path, escape ``..``; ``_`` if nothing is left."""
    parts = ["__" if part == ".." else part for part in key.split("/") if part not in ("", ".")]
    return "/".join(parts) or "_"


def logged_metrics(prefix: str, values: Mapping[str, float]) -> dict[str, float]:
    """An evaluation's metrics as tracked, ``<prefix>/<name>``: the user counts beside them
    (``n_users``, ``n_users_head``, ...) are sizes, not metrics, and are left out."""
    return {f"{prefix}/{k}": float(v) for k, v in values.items() if not k.startswith("n_users")}


def flatten_params(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Flatten a nested config into MLflow params: ``{"model.embedding_size": "64", ...}``.

    Nested mappings are joined with ``.``; an empty mapping becomes ``"{}"``. Strings stay as
    they are, lists and tuples become their ``repr``, everything else ``str``. Values longer
    than MLflow's 6000-character limit are cut, end in ``...`` and are named in a warning.
    Keys are not sanitized here (the tracker does that when it logs them), and flattening a
    flat result is a no-op.
    """
    flat: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            if value:
                flat.update(flatten_params(value, prefix=f"{name}."))
            else:
                flat[name] = "{}"
            continue
        if isinstance(value, str):
            text = value
        elif isinstance(value, list | tuple):
            text = repr(value)
        else:
            text = str(value)
        if len(text) > MAX_PARAM_VALUE_LENGTH:
            log.warning(
                "param %r is %d characters long, over MLflow's limit of %d: logged cut short, "
                "ending in '...'",
                name,
                len(text),
                MAX_PARAM_VALUE_LENGTH,
            )
            text = text[: MAX_PARAM_VALUE_LENGTH - 3] + "..."
        flat[name] = text
    return flat


# --------------------------------------------------------------------------- URIs


def default_tracking_uri(output_dir: Path) -> str:
    """``sqlite:///<absolute output_dir>/mlflow.db`` (four slashes on POSIX: an absolute path)."""
    return f"sqlite:///{(Path(output_dir).resolve() / 'mlflow.db').as_posix()}"


def resolve_tracking_uri(uri: str | None, output_dir: Path) -> str:
    """The tracking URI to use: ``uri`` if given, else ``$RECSYS_TRACKING_URI``, else the default.

    Empty strings count as not given. ``$MLFLOW_TRACKING_URI`` is deliberately not consulted.
    """
    if uri and uri.strip():
        return uri.strip()
    env = os.environ.get(ENV_TRACKING_URI, "").strip()
    if env:
        return env
    return default_tracking_uri(output_dir)


def redact_uri(uri: str) -> str:
    """``uri`` with any password replaced by ``***`` (for messages and logs)."""
    try:
        parts = urlsplit(uri)
        if parts.password is None:
            return uri
        host = parts.hostname or ""
        if parts.port is not None:
            host = f"{host}:{parts.port}"
        return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))
    except ValueError:
        return uri


def check_tracking_uri(uri: str, timeout: float = 5.0) -> None:
    """Check before training that runs can be recorded at ``uri``; raise TrackingError if not.

    - ``http(s)://``: ``GET <uri>/health`` and, if that is not 2xx (a proxy, a path prefix),
      ``GET <uri>/api/2.0/mlflow/experiments/search``; each with ``timeout`` seconds and no
      retries. Credentials and TLS settings come from MLflow's usual environment variables.
    - ``sqlite:///path``: create the database's folder and check that it (and an existing
      database file) is writable.
    - ``file:`` URIs and plain paths (MLflow's file store): create the folder, check it is
      writable, and check that this MLflow allows a file store at all (3.x refuses one unless
      ``MLFLOW_ALLOW_FILE_STORE=true``).
    - anything else (``postgresql://``, ``databricks``, ...): let MLflow open the store and
      wrap its complaint.
    """
    scheme = urlsplit(uri).scheme.lower()
    if scheme in ("http", "https"):
        _check_http(uri, timeout)
    elif scheme.startswith("sqlite"):
        _check_sqlite(uri)
    elif scheme in ("", "file") or (len(scheme) == 1 and os.name == "nt"):
        _check_file_store(uri)
    else:
        _check_other(uri)


def _check_http(uri: str, timeout: float) -> None:
    """Pre-flight for a tracking server: /health, then the search-experiments endpoint."""
    base = uri.rstrip("/")
    health = _http_status(uri, f"{base}/health", timeout)
    if 200 <= health < 300:
        return
    search = _http_status(uri, f"{base}{_SEARCH_PATH}", timeout)
    if 200 <= search < 300:
        return
    raise TrackingError(
        f"MLflow tracking server at {redact_uri(uri)} is not usable: GET /health answered "
        f"HTTP {health} and GET {_SEARCH_PATH.split('?')[0]} answered HTTP {search}; "
        f"check the URI (and credentials) or pass --no-tracking"
    )


def _http_status(uri: str, url: str, timeout: float) -> int:
    """HTTP status of ``GET url``; TrackingError naming ``uri`` if no answer comes back."""
    request = urllib.request.Request(url, headers=_auth_headers(), method="GET")
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=_ssl_context()) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return int(exc.code)
    except urllib.error.URLError as exc:
        what = _describe_network_error(exc.reason, timeout)
    except (TimeoutError, OSError) as exc:
        what = _describe_network_error(exc, timeout)
    except ValueError as exc:  # http.client.InvalidURL and friends
        raise TrackingError(f"invalid MLflow tracking URI {redact_uri(uri)}: {exc}") from exc
    raise TrackingError(
        f"cannot reach MLflow tracking server at {redact_uri(uri)}: {what}; {_NO_TRACKING_HINT}"
    )


def _describe_network_error(reason: object, timeout: float) -> str:
    """A short human description of why a connection failed."""
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, TimeoutError):
        return f"no answer within {timeout:g} s"
    if isinstance(reason, ssl.SSLError):
        return f"TLS error ({reason})"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror.lower()
    return str(reason) or type(reason).__name__


def _auth_headers() -> dict[str, str]:
    """Authorization header from MLflow's environment variables, if any are set."""
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    if token:
        return {"Authorization": f"Bearer {token}"}
    user = os.environ.get("MLFLOW_TRACKING_USERNAME")
    password = os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if user and password:
        basic = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        return {"Authorization": f"Basic {basic}"}
    return {}


def _ssl_context() -> ssl.SSLContext | None:
    """TLS context honouring ``MLFLOW_TRACKING_INSECURE_TLS`` and ``..._SERVER_CERT_PATH``."""
    if os.environ.get("MLFLOW_TRACKING_INSECURE_TLS", "").strip().lower() in ("true", "1"):
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    cert = os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH")
    if cert:
        return ssl.create_default_context(cafile=cert)
    return None


def _sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///...`` URI; None for an in-memory database."""
    rest = uri.split("://", 1)[1] if "://" in uri else None
    if rest == "":  # "sqlite://" is SQLAlchemy's in-memory database
        return None
    if rest is None or not rest.startswith("/"):
        raise TrackingError(
            f"invalid sqlite tracking URI {uri!r}: expected sqlite:///relative/path.db "
            f"or sqlite:////absolute/path.db"
        )
    database = rest[1:].split("?", 1)[0]
    if database in ("", ":memory:"):
        return None
    return Path(database)


def _check_sqlite(uri: str) -> None:
    """Create the database's folder and check that the database can be written there."""
    path = _sqlite_path(uri)
    if path is None:
        return
    _ensure_writable_folder(uri, path.parent)
    if path.is_dir():
        raise TrackingError(f"cannot use MLflow tracking store {uri}: {path} is a folder")
    if path.exists() and not os.access(path, os.W_OK):
        raise TrackingError(f"cannot use MLflow tracking store {uri}: {path} is not writable")


def _file_store_path(uri: str) -> Path:
    """The folder of a ``file:`` URI or a plain path."""
    if urlsplit(uri).scheme.lower() == "file":
        return Path(urllib.request.url2pathname(urlsplit(uri).path))
    return Path(uri)


def _check_file_store(uri: str) -> None:
    """Create the file store's folder, check it is writable and that MLflow will accept it."""
    _ensure_writable_folder(uri, _file_store_path(uri))
    import mlflow
    from mlflow.environment_variables import MLFLOW_ALLOW_FILE_STORE

    try:
        allowed = bool(MLFLOW_ALLOW_FILE_STORE.get())
    except Exception as exc:  # a malformed value of the variable
        raise TrackingError(f"bad MLFLOW_ALLOW_FILE_STORE value: {exc}") from exc
    if not allowed:
        raise TrackingError(
            f"MLflow {mlflow.__version__} refuses the file tracking store {uri} unless "
            f"MLFLOW_ALLOW_FILE_STORE=true is set; use a sqlite:/// URI (the default) instead"
        )


def _check_other(uri: str) -> None:
    """Let MLflow open the store for an unfamiliar scheme; wrap whatever it raises."""
    from mlflow import MlflowClient

    try:
        MlflowClient(tracking_uri=uri)
    except Exception as exc:
        raise TrackingError(
            f"cannot open MLflow tracking store {redact_uri(uri)}: {_first_line(exc)}"
        ) from exc


def _ensure_writable_folder(uri: str, folder: Path) -> None:
    """Create ``folder`` if needed and prove it writable by creating a scratch file in it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TrackingError(
            f"cannot use MLflow tracking store {uri}: cannot create folder {folder}: "
            f"{exc.strerror or exc}"
        ) from exc
    try:
        with tempfile.TemporaryFile(dir=folder, prefix=".recsys-write-check-"):
            pass
    except OSError as exc:
        raise TrackingError(
            f"cannot use MLflow tracking store {uri}: folder {folder} is not writable: "
            f"{exc.strerror or exc}"
        ) from exc


def _first_line(exc: BaseException) -> str:
    """The first line of an exception's message (MLflow's can run to paragraphs)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# --------------------------------------------------------------------------- the MLflow tracker


def _quiet_mlflow_logging() -> None:
    """Silence MLflow's INFO chatter on opening a new sqlite store; warnings still show.

    MLflow already holds ``alembic`` at WARNING; what remains is
    ``mlflow.store.db.utils`` announcing "Creating initial MLflow database tables...". Left
    alone if the user set ``MLFLOW_LOGGING_LEVEL`` or configured that logger.
    """
    if os.environ.get("MLFLOW_LOGGING_LEVEL"):
        return
    chatty = logging.getLogger("mlflow.store.db.utils")
    if chatty.level == logging.NOTSET:
        chatty.setLevel(logging.WARNING)


def _check_status(status: str) -> str:
    """``status`` upper-cased, or ValueError if it is not a terminal MLflow run status."""
    normalized = str(status).upper()
    if normalized not in _TERMINAL_STATUSES:
        raise ValueError(f"run status must be one of {_TERMINAL_STATUSES}, got {status!r}")
    return normalized


def _to_plain(obj: Any) -> Any:
    """``obj`` as plain YAML/JSON data: paths and unknown objects become strings.

    Numpy and torch scalars and arrays become numbers and lists (via ``tolist``).
    """
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    if isinstance(obj, Mapping):
        return {str(key): _to_plain(value) for key, value in obj.items()}
    if isinstance(obj, list | tuple):
        return [_to_plain(value) for value in obj]
    if isinstance(obj, set | frozenset):
        return sorted((_to_plain(value) for value in obj), key=repr)
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    tolist = getattr(obj, "tolist", None)
    if callable(tolist):
        return _to_plain(tolist())
    return str(obj)


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    """Consecutive slices of ``items`` of at most ``size`` elements."""
    for begin in range(0, len(items), size):
        yield items[begin : begin + size]


class MlflowTracker:
    """Records one run at a time in an MLflow tracking store through an ``MlflowClient``.

    Opening the tracker connects to the store and gets or creates ``experiment``; runs are
    opened with :meth:`start`. With ``parent_run_id`` the run is a child of that run (the
    ``mlflow.parentRunId`` tag, as MLflow's nested runs) and lives in the parent's experiment.

    Use it as a context manager to have an open run ended FAILED (KILLED on Ctrl-C) when an
    exception escapes, FINISHED otherwise::

        with MlflowTracker(uri) as tracker:
            tracker.start("bpr-ml100k", config)
            tracker.log_metrics({"valid/ndcg_at_10": 0.31}, step=0)

    Opening the tracker, :meth:`start` and :meth:`reopen` raise MLflow errors (store
    unreachable, write refused) as TrackingError, before any work is done. Once a run is open,
    recording is best effort: the first failure of a write (``log_*``, :meth:`end`) is logged
    once as a warning, kept in :attr:`failure`, and every later write of that run is skipped,
    so a tracking server going away mid-training costs the MLflow record, never the training
    or its local results.
    """

    def __init__(
        self,
        tracking_uri: str,
        experiment: str = "recsys",
        parent_run_id: str | None = None,
    ) -> None:
        """Connect to ``tracking_uri`` and get or create ``experiment``."""
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.parent_run_id = parent_run_id
        self.run_id: str | None = None
        self._active = False
        self._failure: TrackingError | None = None
        import mlflow  # lazily: importing mlflow takes seconds

        _quiet_mlflow_logging()
        with self._errors("open the tracking store"):
            self._client: MlflowClient = mlflow.MlflowClient(tracking_uri=tracking_uri)
        if parent_run_id is not None:
            with self._errors(f"find the parent run {parent_run_id}"):
                parent = self._client.get_run(parent_run_id)
            self.experiment_id = parent.info.experiment_id
        else:
            self.experiment_id = self._get_or_create_experiment(experiment)

    # -- context manager

    def __enter__(self) -> MlflowTracker:
        """Return the tracker itself."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """End an open run: FINISHED, KILLED on KeyboardInterrupt, FAILED on other errors."""
        if exc_type is None:
            self.end("FINISHED")
        elif issubclass(exc_type, KeyboardInterrupt):
            self.end("KILLED")
        else:
            self.end("FAILED")

    def __repr__(self) -> str:
        """Describe the tracker without leaking credentials."""
        return (
            f"MlflowTracker({redact_uri(self.tracking_uri)!r}, experiment={self.experiment!r}, "
            f"run_id={self.run_id!r})"
        )

    # -- the Tracker interface

    @property
    def active(self) -> bool:
        """Whether a run is open (started and not yet ended)."""
        return self._active

    @property
    def failure(self) -> TrackingError | None:
        """Why the current (or last) run stopped being recorded; None while all went well."""
        return self._failure

    def start(
        self, run_name: str, params: dict[str, Any], tags: dict[str, str] | None = None
    ) -> None:
        """Open a run named ``run_name``; log ``params`` (flattened, sanitized) and ``tags``.

        MLflow's context tags (``mlflow.user``, ``mlflow.source.name``, the git commit when
        there is one) are added, as the fluent ``mlflow.start_run`` would.
        """
        if self._active:
            raise RuntimeError(f"run {self.run_id} is still open; end() it before start()")
        from mlflow.entities import Param

        run_tags = {
            sanitize_key(key): str(value)[:_MAX_TAG_VALUE_LENGTH]
            for key, value in (tags or {}).items()
        }
        run_tags = self._context_tags(run_tags)
        if self.parent_run_id is not None:
            run_tags[_PARENT_RUN_TAG] = self.parent_run_id
        flat = self._sanitized(flatten_params(params), "param")
        with self._errors(f"create run {run_name!r}"):
            run = self._client.create_run(self.experiment_id, tags=run_tags, run_name=run_name)
        self.run_id = run.info.run_id
        self._active = True
        self._failure = None
        items = [Param(key, value) for key, value in flat.items()]
        with self._recording("log params"):
            for chunk in _chunks(items, _MAX_PARAMS_PER_BATCH):
                self._client.log_batch(self.run_id, params=chunk, synchronous=True)
        log.info(
            "MLflow run %s (%s) in experiment %s at %s",
            self.run_id,
            run_name,
            self.experiment_id,
            redact_uri(self.tracking_uri),
        )

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        """Log ``metrics`` at ``step`` (0 when None) in batches; keys are sanitized."""
        run_id = self._require_run("log_metrics")
        from mlflow.entities import Metric

        timestamp = int(time.time() * 1000)
        values: dict[str, float] = {}
        for key, value in metrics.items():
            try:
                values[key] = float(value)
            except (TypeError, ValueError) as exc:
                raise TypeError(f"metric {key!r} is not a number: {value!r}") from exc
        if self._failure is not None:
            return
        items = [
            Metric(key, value, timestamp, int(step or 0))
            for key, value in self._sanitized(values, "metric").items()
        ]
        with self._recording("log metrics"):
            for chunk in _chunks(items, _MAX_METRICS_PER_BATCH):
                self._client.log_batch(run_id, metrics=chunk, synchronous=True)

    def log_dict(self, obj: dict[str, Any], artifact_file: str) -> None:
        """Store ``obj`` as ``artifact_file``: YAML for ``.yaml``/``.yml``, JSON otherwise.

        Key order is kept (MLflow's own ``log_dict`` sorts YAML keys); paths, numpy values and
        other non-plain values are written as numbers, lists or strings.
        """
        run_id = self._require_run("log_dict")
        if self._failure is not None:
            return
        target = PurePosixPath(artifact_file)
        plain = _to_plain(obj)
        with tempfile.TemporaryDirectory(prefix="recsys-artifact-") as tmp:
            local = Path(tmp) / target.name
            with local.open("w", encoding="utf-8") as handle:
                if target.suffix.lower() in (".yaml", ".yml"):
                    yaml.safe_dump(
                        plain,
                        handle,
                        sort_keys=False,
                        default_flow_style=False,
                        allow_unicode=True,
                    )
                else:
                    # strict JSON: NaN and infinities are null
                    handle.write(dumps_json(plain, indent=2, ensure_ascii=False) + "\n")
            folder = str(target.parent)
            with self._recording(f"log {artifact_file}"):
                self._client.log_artifact(run_id, str(local), None if folder == "." else folder)

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        """Store the file or folder ``path`` as an artifact.

        A file lands as ``<artifact_path>/<file name>``. A folder's contents land under
        ``artifact_path``, which defaults to the folder's own name (so ``reports/`` is kept as
        ``reports/...`` rather than spilled into the artifact root).
        """
        run_id = self._require_run("log_artifact")
        path = Path(path)
        if self._failure is not None and path.exists():
            return
        if path.is_dir():
            with self._recording(f"log folder {path}"):
                self._client.log_artifacts(run_id, str(path), artifact_path or path.name)
        elif path.is_file():
            with self._recording(f"log file {path}"):
                self._client.log_artifact(run_id, str(path), artifact_path)
        else:
            raise FileNotFoundError(f"cannot log artifact {path}: no such file or folder")

    def reopen(self, run_id: str) -> None:
        """Make ``run_id`` this tracker's open run again and mark it RUNNING (a resumed tune
        experiment continues the runs it started)."""
        with self._errors(f"reopen run {run_id}"):
            self._client.update_run(run_id, status="RUNNING")
        self.run_id = run_id
        self._active = True
        self._failure = None

    def last_step(self, key: str) -> int | None:
        """The highest step at which the open run has logged metric ``key`` (None: never)."""
        run_id = self._require_run("last_step")
        with self._errors(f"read the history of {key} in run {run_id}"):
            history = self._client.get_metric_history(run_id, key)
        return max((m.step for m in history), default=None)

    def log_params(self, params: dict[str, Any], tags: dict[str, str] | None = None) -> None:
        """Log more ``params`` (flattened, sanitized; new keys only) and ``tags`` to the open
        run, after :meth:`start` (a tune experiment learns its best config only at the end)."""
        from mlflow.entities import Param, RunTag

        run_id = self._require_run("log_params")
        if self._failure is not None:
            return
        flat = self._sanitized(flatten_params(params), "param")
        items = [Param(key, value) for key, value in flat.items()]
        run_tags = [
            RunTag(sanitize_key(k), str(v)[:_MAX_TAG_VALUE_LENGTH]) for k, v in (tags or {}).items()
        ]
        with self._recording("log params"):
            self._client.log_batch(run_id, params=items, tags=run_tags, synchronous=True)

    def end(self, status: str = "FINISHED") -> None:
        """Close the open run with ``status``; a no-op when no run is open.

        A failure to record the status is logged as a warning, not raised: the work is done
        (or an error is being handled) by then. After an earlier failure (:attr:`failure`)
        nothing is sent: the run stays RUNNING in MLflow, as the warning said it would.
        """
        status = _check_status(status)
        if not self._active or self.run_id is None:
            return
        if self._failure is None:
            with self._recording(f"end run {self.run_id} as {status}"):
                self._client.set_terminated(self.run_id, status=status)
        self._active = False

    # -- helpers

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """Re-raise MLflow and I/O errors met while doing ``action`` as TrackingError."""
        from mlflow.exceptions import MlflowException

        try:
            yield
        except (MlflowException, OSError) as exc:
            raise TrackingError(
                f"MLflow could not {action} at {redact_uri(self.tracking_uri)}: {_first_line(exc)}"
            ) from exc

    @contextmanager
    def _recording(self, action: str) -> Iterator[None]:
        """Do ``action``, a write to the open run, best effort.

        A failure (as :meth:`_errors` words it) is kept in :attr:`failure` and logged once as
        a warning, not raised; callers skip their writes once :attr:`failure` is set.
        """
        try:
            with self._errors(action):
                yield
        except TrackingError as exc:
            self._failure = exc
            log.warning(
                "%s. MLflow tracking is off for the rest of run %s (it stays incomplete in "
                "MLflow); the work goes on and its local results are not affected",
                str(exc).rstrip("."),
                self.run_id,
            )

    def _require_run(self, method: str) -> str:
        """The open run's id, or RuntimeError naming ``method``."""
        if not self._active or self.run_id is None:
            raise RuntimeError(f"MlflowTracker.{method} needs an open run: call start() first")
        return self.run_id

    def _artifact_location(self, experiment: str) -> str | None:
        """Where a new experiment keeps artifacts: next to a sqlite file, else MLflow decides."""
        if not urlsplit(self.tracking_uri).scheme.lower().startswith("sqlite"):
            return None
        path = _sqlite_path(self.tracking_uri)
        if path is None:
            return None
        folder = path.resolve().parent / _ARTIFACT_FOLDER / sanitize_key(experiment)
        return folder.as_uri()

    def _get_or_create_experiment(self, name: str) -> str:
        """The id of the experiment ``name``, created if missing (races with others are fine)."""
        from mlflow.exceptions import MlflowException

        with self._errors(f"look up experiment {name!r}"):
            found = self._client.get_experiment_by_name(name)
        if found is None:
            try:
                with self._errors(f"create experiment {name!r}"):
                    return str(
                        self._client.create_experiment(
                            name, artifact_location=self._artifact_location(name)
                        )
                    )
            except TrackingError as exc:
                # another process (a parallel trial) may have created it meanwhile
                cause = exc.__cause__
                if not (
                    isinstance(cause, MlflowException)
                    and cause.error_code == "RESOURCE_ALREADY_EXISTS"
                ):
                    raise
                with self._errors(f"look up experiment {name!r}"):
                    found = self._client.get_experiment_by_name(name)
                if found is None:
                    raise
        if found.lifecycle_stage != "active":
            # `mlflow experiments` reads its store from the environment, never from an option
            uri = shlex.quote(redact_uri(self.tracking_uri))
            raise TrackingError(
                f"MLflow experiment {name!r} at {redact_uri(self.tracking_uri)} is deleted; "
                f"restore it (MLFLOW_TRACKING_URI={uri} mlflow experiments restore "
                f"--experiment-id {found.experiment_id}) or choose another experiment name"
            )
        return str(found.experiment_id)

    def _context_tags(self, tags: dict[str, str]) -> dict[str, str]:
        """``tags`` plus MLflow's context tags (user, source, git commit); ``tags`` win."""
        try:
            from mlflow.tracking.context.registry import resolve_tags

            return {str(k): str(v) for k, v in resolve_tags(tags).items()}
        except Exception as exc:  # a private MLflow API: never let it break a run
            log.debug("MLflow context tags unavailable: %s", exc)
            return dict(tags)

    @staticmethod
    def _sanitized(values: Mapping[str, Any], kind: str) -> dict[str, Any]:
        """``values`` with sanitized keys; a warning when two keys collapse into one."""
        clean: dict[str, Any] = {}
        for key, value in values.items():
            name = sanitize_key(key)
            if name in clean:
                log.warning(
                    "%s %r sanitizes to %r, which is already set; keeping the last", kind, key, name
                )
            clean[name] = value
        return clean


# --------------------------------------------------------------------------- the factory


def make_tracker(enabled: bool, uri: str | None, output_dir: Path, experiment: str) -> Tracker:
    """The tracker for a run: NullTracker if disabled, else a checked MlflowTracker.

    The URI is resolved (:func:`resolve_tracking_uri`), logged, and checked
    (:func:`check_tracking_uri`) before anything else happens, so a bad URI fails fast with a
    TrackingError.
    """
    if not enabled:
        return NullTracker()
    resolved = resolve_tracking_uri(uri, Path(output_dir))
    log.info("MLflow tracking URI %s (experiment %r)", redact_uri(resolved), experiment)
    check_tracking_uri(resolved)
    return MlflowTracker(resolved, experiment=experiment)
