"""Real services for the distributed tests: a private redis-server, a private PostgreSQL
cluster, `mils worker` processes and `mils` CLI calls, all as subprocesses.

Every process started here is owned by an object whose `close()` kills it; the fixtures
in tests/service/test_distributed.py call `close()` in their teardown, whatever the test did.
Nothing here touches the machine's own Redis (6379) or PostgreSQL server (other than
creating/dropping databases through the `pg_url` fixture).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parents[2]
PG_BIN = Path("/usr/lib/postgresql/15/bin")


# --------------------------------------------------------------------------- polling


def wait_for(what: str, check: Callable[[], Any], timeout: float, interval: float = 0.1,
             on_timeout: Callable[[], str] | None = None) -> Any:
    """Poll `check` until it returns something truthy (returned) or `timeout` passes (fails)."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = check()
            if value:
                return value
        except Exception as exc:  # a server that is (re)starting: keep polling
            last_error = exc
        if time.monotonic() > deadline:
            extra = on_timeout() if on_timeout else ""
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}"
                                 f"{f' (last error: {last_error!r})' if last_error else ''}\n{extra}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _kill(proc: subprocess.Popen | None, grace: float = 0.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    if grace:
        proc.terminate()
        try:
            proc.wait(grace)
            return
        except subprocess.TimeoutExpired:
            pass
    proc.kill()
    proc.wait(10)


# --------------------------------------------------------------------------- Redis


class RedisServer:
    """A private, non-persistent redis-server on a free port; kill() and start() again on it."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.log = folder / "redis.log"
        self.proc: subprocess.Popen | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, "redis-server already running"
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--daemonize", "no", "--dir", str(self.folder)],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        wait_for("redis-server to answer PING", self.ping, timeout=15, on_timeout=self.log.read_text)

    def ping(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            raise RuntimeError(f"redis-server exited: {self.log.read_text()[-2000:]}")
        with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")

    def kill(self) -> None:
        """SIGKILL: no shutdown, no save (it never saves anyway): every message in it is gone."""
        _kill(self.proc)

    def close(self) -> None:
        _kill(self.proc)


# --------------------------------------------------------------------------- PostgreSQL


def _as_postgres(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["runuser", "-u", "postgres", "--", *args], capture_output=True, text=True,
                          timeout=timeout)


class PgCluster:
    """A private PostgreSQL 15 cluster (initdb into a temp folder owned by `postgres`) that
    can be stopped and started without disturbing the machine's own server."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="mils-pg-", dir="/tmp"))
        self.data = self.folder / "data"
        self.port = free_port()
        shutil.chown(self.folder, "postgres", "postgres")
        out = _as_postgres(str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
                           "--no-sync")
        assert out.returncode == 0, out.stdout + out.stderr
        self.server_url = f"postgresql://postgres@127.0.0.1:{self.port}"
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/mils"
        self.started = False

    @property
    def logfile(self) -> Path:
        return self.folder / "server.log"

    def log_text(self) -> str:
        try:
            return self.logfile.read_text()[-4000:]
        except OSError:
            return ""

    def start(self) -> None:
        out = _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.logfile), "-w",
                           "-o", f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off",
                           "start")
        assert out.returncode == 0, out.stdout + out.stderr + self.log_text()
        self.started = True

    def stop(self, mode: str = "fast") -> None:
        out = _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")
        assert out.returncode == 0, out.stdout + out.stderr + self.log_text()
        self.started = False

    def create_database(self, name: str = "mils") -> None:
        with psycopg.connect(f"{self.server_url}/postgres", autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')

    def close(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                out = _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w",
                                   "stop", timeout=30)
                if out.returncode != 0 and (self.data / "postmaster.pid").exists():
                    pid = int((self.data / "postmaster.pid").read_text().split()[0])
                    os.kill(pid, signal.SIGKILL)
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


# --------------------------------------------------------------------------- the broker of this process


def use_broker(url: str) -> None:
    """Point this process's Celery app at `url` (its connection pools are built lazily); the
    `queue_db` fixture gives each test a private SQLite-backed queue this way."""
    from worker.celery_app import app as celery_app, transport_options

    celery_app.conf.broker_url = url
    celery_app.conf.broker_transport_options = transport_options(url)
    if celery_app._pool is not None:
        celery_app._pool.force_close_all()
    celery_app._pool = None
    celery_app.amqp._producer_pool = None


def queued(path: Path) -> list[tuple[int, int]]:
    """(job, step) of every message waiting in a SQLite-backed queue file, oldest first."""
    import base64
    import json
    import sqlite3

    if not path.exists():
        return []
    with sqlite3.connect(path) as conn:
        payloads = [row[0] for row in conn.execute("SELECT payload FROM kombu_message ORDER BY id")]
    # kombu's message: JSON whose body is base64 of Celery's JSON [args, kwargs, embed].
    return [tuple(json.loads(base64.b64decode(json.loads(p)["body"]))[0]) for p in payloads]


# --------------------------------------------------------------------------- database reads


def psycopg_url(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def query(url: str, sql: str, params: tuple = ()) -> list[tuple]:
    """One fresh connection per call, so a restarted server never leaves us a dead one."""
    with psycopg.connect(psycopg_url(url), connect_timeout=3) as conn:
        return conn.execute(sql, params).fetchall()


def scalar(url: str, sql: str, params: tuple = ()) -> Any:
    rows = query(url, sql, params)
    return rows[0][0] if rows else None


def job_status(url: str, job_id: int) -> str | None:
    return scalar(url, "SELECT status FROM jobs WHERE id = %s", (job_id,))


def committed_steps(url: str, job_id: int) -> list[int]:
    return [r[0] for r in query(url, "SELECT step FROM steps WHERE job_id = %s ORDER BY step", (job_id,))]


def assert_committed_once(url: str, job_ids: Iterable[int], pairs: Iterable[tuple[int, int]]) -> None:
    """The jobs' committed steps are exactly `pairs` (job, step), each once, read from the
    database: a commit of a step is its row in `steps`, and UNIQUE (job_id, step) makes a second
    commit of the same step fail instead of adding a row. (The workers' logs cannot show this: a
    worker killed between a commit and its log line leaves a commit that no log has.)"""
    unique = query(url, "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
                        "WHERE conrelid = 'steps'::regclass AND contype = 'u'")
    assert ("UNIQUE (job_id, step)",) in unique, unique
    rows = query(url, "SELECT job_id, step, count(*) FROM steps WHERE job_id = ANY(%s) GROUP BY job_id, step",
                 (sorted(set(job_ids)),))
    committed = Counter({(job_id, step): n for job_id, step, n in rows})
    want = Counter({pair: 1 for pair in pairs})
    missing, extra = sorted(want - committed), sorted(committed - want)
    assert committed == want, f"not committed: {missing[:20]}; committed but not wanted or twice: {extra[:20]}"


def logged_commits(workers: Iterable[Worker]) -> Counter:
    """(job, step) -> the "job J step S committed" lines of the workers' logs. Evidence in one
    direction only: a worker writes the line just after its commit, so a SIGKILL between the
    two leaves a commit with no line (ask the database what was committed), but a line never
    stands for a commit that did not happen: every line must be a committed step, and a step
    logged twice means two deliveries that each believed they committed it."""
    return Counter(pair for worker in workers for pair in worker.committed())


def assert_logged_commits_true(url: str, workers: Iterable[Worker], job_ids: Iterable[int]) -> Counter:
    """Every "committed" line of the workers' logs names a committed step of those jobs, once."""
    logged = logged_commits(workers)
    jobs = sorted(set(job_ids))
    committed = set(query(url, "SELECT job_id, step FROM steps WHERE job_id = ANY(%s)", (jobs,)))
    mine = {pair: n for pair, n in logged.items() if pair[0] in jobs}
    assert not set(mine) - committed, f"logged as committed, not in the database: {sorted(set(mine) - committed)}"
    twice = {pair: n for pair, n in mine.items() if n > 1}
    assert not twice, f"logged as committed more than once: {twice}"
    return logged


def events(url: str, job_id: int) -> list[tuple[str, str | None]]:
    return [(k, d) for k, d in query(url, "SELECT kind, detail FROM job_events WHERE job_id = %s ORDER BY id",
                                      (job_id,))]


TABLES = ("jobs", "steps", "candidates", "top_entries", "job_events", "artifacts")


def row_counts(url: str) -> dict[str, int]:
    return {t: scalar(url, f"SELECT count(*) FROM {t}") for t in TABLES}


def job_record(url: str, job_id: int) -> dict:
    """Everything a job's result is made of, comparable between jobs (no ids, no times)."""
    steps = query(url, "SELECT step, best_text, best_score, mean_topk, n_candidates, improved FROM steps "
                       "WHERE job_id = %s ORDER BY step", (job_id,))
    candidates = query(url, "SELECT step, text, text_key, score, rank FROM candidates WHERE job_id = %s "
                            "ORDER BY step, id", (job_id,))
    tops = query(url, "SELECT t.step, t.rank, c.text, c.score FROM top_entries t "
                      "JOIN candidates c ON c.id = t.candidate_id WHERE t.job_id = %s ORDER BY t.step, t.rank",
                 (job_id,))
    result = query(url, "SELECT result_text, result_score FROM jobs WHERE id = %s", (job_id,))
    by_step: dict[int, list[tuple]] = {}
    for step, *rest in candidates:
        by_step.setdefault(step, []).append(tuple(rest))
    return {"steps": [tuple(s) for s in steps], "candidates": by_step, "tops": [tuple(t) for t in tops],
            "result": tuple(result[0])}


# --------------------------------------------------------------------------- mils processes


def mils_executable() -> str:
    beside = Path(sys.executable).with_name("mils")
    found = str(beside) if beside.exists() else shutil.which("mils")
    assert found, "the `mils` console script is not installed (pip install -e '.[test]')"
    return found


def mils_env(*, home: Path, database_url: str, broker_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MILS_")}
    env.update(
        PYTHONPATH=str(ROOT),  # so `py:tests.support.fakes:...` specs import in the worker
        PYTHONWARNINGS="ignore",
        HF_HUB_OFFLINE="1",
        MILS_HOME=str(home),
        MILS_DATABASE_URL=database_url,
        MILS_BROKER_URL=broker_url,
        MILS_HEARTBEAT_SECONDS="0.5",
        MILS_STALE_SECONDS="4",
        MILS_REAP_SECONDS="1",
        MILS_VISIBILITY_TIMEOUT="10",
        MILS_FAKE_STEP_SECONDS="1.0",
    )
    env.update(extra)
    return env


def run_mils(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([mils_executable(), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def run_embedded(*args: str, home: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """`mils ARGS` on the embedded default under `home` (its SQLite database and queue), with
    the repository on the path for the `py:tests.support.fakes:...` specs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MILS_")}
    env.update(MILS_HOME=str(home), PYTHONPATH=str(ROOT), PYTHONWARNINGS="ignore", HF_HUB_OFFLINE="1")
    return subprocess.run([mils_executable(), *args], env=env, capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT)


def assert_one_error_line(out: subprocess.CompletedProcess, pattern: str) -> list[str]:
    """A refused command: a non-zero exit, no traceback, one `Error:` line matching `pattern`."""
    assert out.returncode != 0 and "Traceback" not in out.stderr, out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and re.search(pattern, errors[0]), out.stderr
    return errors


class Worker:
    """One `mils worker` process (solo pool: one process, one step at a time), logging to a file."""

    def __init__(self, name: str, env: dict[str, str], folder: Path, args: Sequence[str] = ()) -> None:
        self.name = name
        self.log = folder / f"worker-{name}.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [mils_executable(), "worker", "--loglevel", "INFO", "--name", f"{name}@%h", *args],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        self.pid = self.proc.pid

    def text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_ready(self, timeout: float = 60) -> None:
        def ready() -> bool:
            if not self.alive():
                raise AssertionError(f"worker {self.name} exited ({self.proc.returncode}):\n{self.text()}")
            return " ready." in self.text()

        wait_for(f"worker {self.name} to be ready", ready, timeout, on_timeout=self.text)

    def sigkill(self) -> None:
        os.kill(self.pid, signal.SIGKILL)
        self.proc.wait(10)

    def freeze(self) -> None:
        """SIGSTOP: the process stays (its step in flight, its connections open) but runs
        nothing, neither its step nor its heartbeat, until it is killed."""
        os.kill(self.pid, signal.SIGSTOP)

    def close(self) -> None:
        _kill(self.proc)

    # what the log says
    def committed(self) -> list[tuple[int, int]]:
        """The steps this worker logged as committed: each one was, but after a SIGKILL a commit
        may have no line (see `logged_commits`); the database says what was committed."""
        return [(int(j), int(s)) for j, s in re.findall(r"job (\d+) step (\d+) committed", self.text())]

    def received_task_ids(self) -> list[str]:
        return re.findall(r"Task worker\.tasks\.run_step\[([0-9a-f-]+)\] received", self.text())


class LLMServer:
    """One `mils llm-server` process: llama.cpp serving the embedded GGUF over the OpenAI API on
    localhost. `home` holds the joined GGUF (the slow tests' shared home: joined once)."""

    def __init__(self, folder: Path, home: Path, parallel: int = 1, reproducible: bool = True,
                 threads: int = 2) -> None:
        self.folder, self.home = folder, home
        self.port = free_port()
        self.args = ["--port", str(self.port), "--parallel", str(parallel), "--threads", str(threads),
                     "--reproducible" if reproducible else "--prompt-cache"]
        self.proc: subprocess.Popen | None = None
        self.log = folder / f"llm-server-{self.port}.log"
        self.url = f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout: float = 180) -> LLMServer:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MILS_")}
        env["MILS_HOME"] = str(self.home)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([mils_executable(), "llm-server", *self.args], cwd=ROOT, env=env,
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

        def answers() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"llm-server exited ({self.proc.returncode}):\n{self.text()}")
            try:
                with urllib.request.urlopen(f"{self.url}/models", timeout=2) as response:
                    return response.status == 200
            except OSError:
                return False

        wait_for("the LLM server to answer", answers, timeout, interval=0.2, on_timeout=self.text)
        return self

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def kill(self) -> None:
        """SIGKILL: the server dies mid-request, as in a crash."""
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def close(self) -> None:
        _kill(self.proc)


def without_spice(monkeypatch) -> None:
    """pycocoevalcap's COCOEvalCap with SPICE scoring 0: its Stanford CoreNLP jars cannot be
    downloaded here, and `mils batch eval` skips SPICE too, so the two compare like for like."""
    import pycocoevalcap.eval as cocoeval

    class NoSpice:
        def compute_score(self, gts, res):
            return 0.0, [0.0] * len(gts)

        def method(self):
            return "SPICE"

    monkeypatch.setattr(cocoeval, "Spice", NoSpice)


# --------------------------------------------------------------------------- a reverse proxy


NGINX_CONFIG = """\
# A reverse proxy as an operator would put in front of `mils web` (docs/operations.md).
daemon off;
{user}worker_processes 1;
pid {folder}/nginx.pid;
error_log {folder}/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log {folder}/access.log;
    client_body_temp_path {folder}/client_body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
    server {{
        listen 127.0.0.1:{port};
        client_max_body_size 64m;
        location {prefix}/ {{
            proxy_pass {upstream}/;
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Prefix {prefix};
            proxy_buffering off;
        }}
        location / {{ return 404 "not under {prefix}\\n"; }}
    }}
}}
"""


class Nginx:
    """nginx (the system's binary) on a free port, serving `upstream` under `prefix` with the
    X-Forwarded-For, -Proto and -Prefix headers set; its config, logs and temp files in `folder`."""

    def __init__(self, binary: str, upstream: str, folder: Path, prefix: str = "/mils") -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}{prefix}"
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        # As root nginx's workers would run as nobody, who can't write the temp files here.
        user = "user root;\n" if os.geteuid() == 0 else ""
        self.config = folder / "nginx.conf"
        self.config.write_text(NGINX_CONFIG.format(user=user, folder=folder, port=self.port, prefix=prefix,
                                                   upstream=upstream))
        self.log = folder / "nginx.out"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen([binary, "-p", str(folder), "-e", str(folder / "error.log"),
                                          "-c", str(self.config)],
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def text(self) -> str:
        return "".join(f"===== {p.name}\n{p.read_text(errors='replace')[-4000:]}\n"
                       for p in (self.log, self.folder / "error.log") if p.exists())

    def wait_ready(self, timeout: float = 30) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"nginx exited ({self.proc.returncode}):\n{self.text()}")
            with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as response:
                return response.status == 200

        wait_for("nginx to pass /healthz through", ready, timeout, interval=0.2, on_timeout=self.text)

    def close(self) -> None:
        _kill(self.proc, grace=5)
