"""Every `MILS_*` setting, read from the environment when it is asked for (never at import), so a
test or a process that sets a variable before calling sees it. Defaults are in one place: here.

| variable                  | default                           | used by                          |
|---------------------------|-----------------------------------|----------------------------------|
| MILS_HOME                 | ~/.mils                           | data folder: SQLite, model cache |
| MILS_DATABASE_URL         | sqlite:///$MILS_HOME/mils.db      | the store                        |
| MILS_BROKER_URL           | sqla+sqlite:///$MILS_HOME/queue.db| the queue                        |
| MILS_VISIBILITY_TIMEOUT   | 3600 s                            | Redis redelivery of a lost step  |
| MILS_HEARTBEAT_SECONDS    | 10                                | the runner's heartbeat           |
| MILS_MAX_STEP_ATTEMPTS    | 3                                 | bounded redelivery of a step     |
| MILS_STALE_SECONDS        | 600                               | the reaper                       |
| MILS_AUTO_RESUME          | 1                                 | the reaper                       |
| MILS_MAX_AUTO_RESUMES     | 3                                 | the reaper                       |
| MILS_REAP_SECONDS         | 30                                | the workers' reaper loop         |
| MILS_PARENT_POLL_SECONDS  | 5                                 | arithmetic jobs waiting          |
| MILS_LLM_TIMEOUT          | 600 s                             | one request to an LLM server     |
| MILS_LLM_WAIT_SECONDS     | 900 s                             | a step waiting for its LLM server|
| MILS_LLM_SLOTS            | 1                                 | the in-process llama.cpp engine  |
| MILS_LLM_THREADS          | the machine's cores               | the in-process llama.cpp engine  |
| OPENAI_API_KEY            | (none: "unused" is sent)          | openai:MODEL@URL generators      |
| OPENAI_BASE_URL           | (none)                            | openai:MODEL without @URL        |
| MILS_WEB_AUTH             | none                              | the web app (none or token)      |
| MILS_DATASET_ROOT         | (none)                            | manifests uploaded to the web    |
| MILS_BATCH_UPLOAD_BYTES   | 2 GiB                             | a batch's archive upload (web)   |
| MILS_TOKEN_MAX_ACTIVE     | 0 (no limit)                      | a user token's jobs in flight    |
| MILS_SECRET_KEY           | a key kept in $MILS_HOME          | the web app's sessions           |
| MILS_HTTPS                | 0                                 | the web app's cookie: Secure     |
| MILS_PROXY_COUNT          | 0 (no proxy trusted)              | the web app behind proxies       |
| MILS_MODELS               | (none: only 'embedded')           | the model registry (web, workers)|
| MILS_WEB_RAW_SPECS        | none                              | raw specs from admin tokens (web)|
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def _number(name: str, default: float) -> float:
    return float(os.environ.get(name) or default)


def _flag(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    return default if raw is None else raw.strip().lower() not in ("0", "false", "no", "off")


# --------------------------------------------------------------------------- where things live


def data_dir() -> Path:
    """The embedded default's folder: SQLite database, model caches. `MILS_HOME` moves it."""
    path = Path(os.environ.get("MILS_HOME", Path.home() / ".mils")).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_dir(*parts: str) -> Path:
    path = data_dir().joinpath("cache", *parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def database_url() -> str:
    """`MILS_DATABASE_URL` (e.g. postgresql+psycopg://...) or a SQLite file in the data folder."""
    return os.environ.get("MILS_DATABASE_URL") or f"sqlite:///{data_dir() / 'mils.db'}"


def broker_url() -> str:
    """`MILS_BROKER_URL` (e.g. redis://host:6379/0) or a SQLite-backed queue beside the database."""
    return os.environ.get("MILS_BROKER_URL") or f"sqla+sqlite:///{data_dir() / 'queue.db'}"


# --------------------------------------------------------------------------- the durable service


def visibility_timeout() -> float:
    """Seconds after which Redis redelivers an unacknowledged step (its worker died mid-step)."""
    return _number("MILS_VISIBILITY_TIMEOUT", 3600)


def heartbeat_seconds() -> float:
    """How often a running step refreshes its job's heartbeat."""
    return _number("MILS_HEARTBEAT_SECONDS", 10)


def max_step_attempts() -> int:
    """A step whose worker died this many times fails the job (resume retries it)."""
    return int(_number("MILS_MAX_STEP_ATTEMPTS", 3))


def stale_seconds() -> float:
    """A running job (a worker holds its step) whose heartbeat is older than this is taken for
    dead; a queued job waiting longer than this has its message looked for on the broker."""
    return _number("MILS_STALE_SECONDS", 600)


def auto_resume() -> bool:
    """Whether the reaper resumes interrupted jobs by itself."""
    return _flag("MILS_AUTO_RESUME", True)


def max_auto_resumes() -> int:
    """Automatic resumes of one job at most; after that only a person resumes it."""
    return int(_number("MILS_MAX_AUTO_RESUMES", 3))


def reap_seconds() -> float:
    """Period of each worker's reaper pass."""
    return _number("MILS_REAP_SECONDS", 30)


def batch_in_flight() -> int:
    """A batch's jobs on the queue or running at once at most, unless the batch says otherwise."""
    return max(1, int(_number("MILS_BATCH_IN_FLIGHT", 64)))


def parent_poll_seconds() -> float:
    """How long a job built on unfinished jobs (arithmetic) waits before it looks again."""
    return _number("MILS_PARENT_POLL_SECONDS", 5)


# --------------------------------------------------------------------------- LLM engines


def llm_timeout() -> float:
    """Seconds one chat-completion request may take before the step fails (a share of N candidates
    on a slow CPU server can take minutes)."""
    return _number("MILS_LLM_TIMEOUT", 600)


def llm_wait_seconds() -> float:
    """How long a step keeps trying again while its LLM server is unreachable before the job fails."""
    return _number("MILS_LLM_WAIT_SECONDS", 900)


def llm_slots() -> int:
    """Parallel sequences of the in-process llama.cpp engine. 1 keeps runs reproducible (a request
    decoded beside others gets slightly different logits); more pays off on a GPU build."""
    return max(1, int(_number("MILS_LLM_SLOTS", 1)))


def llm_threads() -> int:
    """CPU threads of the in-process llama.cpp engine."""
    return max(1, int(_number("MILS_LLM_THREADS", os.cpu_count() or 1)))


# --------------------------------------------------------------------------- the web front end


def dataset_root() -> Path | None:
    """The server's folder that a manifest uploaded alone may name files in (`MILS_DATASET_ROOT`);
    None: such manifests are refused (an archive of the media is the other way)."""
    raw = os.environ.get("MILS_DATASET_ROOT")
    return Path(raw).expanduser() if raw else None


def batch_upload_bytes() -> int:
    """The largest archive or manifest the web takes for a batch (`MILS_BATCH_UPLOAD_BYTES`)."""
    return int(_number("MILS_BATCH_UPLOAD_BYTES", 2 * 1024**3))


def token_max_active() -> int | None:
    """The most jobs a user token (not an admin's) may have queued or running; a web submission
    that would pass it is refused (429). `MILS_TOKEN_MAX_ACTIVE`; 0 or unset: no limit. A batch's
    items count as jobs from their submission, held or not."""
    value = int(_number("MILS_TOKEN_MAX_ACTIVE", 0))
    return value if value > 0 else None


def web_auth() -> str:
    """'none' (anyone who reaches the port) or 'token' (`mils token create`)."""
    return os.environ.get("MILS_WEB_AUTH", "none")


def web_raw_specs() -> str:
    """`MILS_WEB_RAW_SPECS`: with token auth, who may send a raw model spec instead of a registry
    name: 'none' (nobody) or 'admin' (admin tokens; never py: specs, file paths or unnamed URLs)."""
    value = os.environ.get("MILS_WEB_RAW_SPECS", "none").strip().lower() or "none"
    if value not in ("none", "admin"):
        raise ValueError(f"MILS_WEB_RAW_SPECS must be 'none' or 'admin', not {value!r}")
    return value


def models_path() -> Path | None:
    """`MILS_MODELS`: the operator's model registry, a TOML file (worker.models.registry); None:
    only the built-in 'embedded' generator and scorer have names."""
    raw = os.environ.get("MILS_MODELS", "").strip()
    return Path(raw).expanduser() if raw else None


def secret_key() -> str:
    """`MILS_SECRET_KEY`, or a random key kept in the data folder so sessions survive a restart.
    Several web processes on several machines must share one: set MILS_SECRET_KEY."""
    if os.environ.get("MILS_SECRET_KEY"):
        return os.environ["MILS_SECRET_KEY"]
    path = data_dir() / "web_secret_key"
    if not path.exists():
        import secrets

        path.touch(mode=0o600)
        path.write_text(secrets.token_hex(32))
    return path.read_text().strip()


def https() -> bool:
    """`MILS_HTTPS`: the site is served over https (by the web server or a proxy in front), so
    the session cookie is marked Secure and a browser never sends it over plain http."""
    return _flag("MILS_HTTPS", False)


def proxy_count() -> int:
    """`MILS_PROXY_COUNT`: how many reverse proxies stand in front of the web app; their
    X-Forwarded-For, -Proto, -Host, -Port and -Prefix headers are believed (web.headers).
    0: none, and those headers are ignored (anyone could send them)."""
    return int(_number("MILS_PROXY_COUNT", 0))


# --------------------------------------------------------------------------- files


def write_atomically(path: Path, data: bytes) -> None:
    """Write through a temporary file of our own in the same folder, then rename: a concurrent
    worker writing the same cache file, or reading it, never sees half of it."""
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(handle, "wb") as out:
        out.write(data)
    os.replace(tmp, path)
