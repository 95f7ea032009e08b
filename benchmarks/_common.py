"""Shared helpers of the benchmark scripts: the bench home, machine facts, results files, and a
throw-away PostgreSQL database (`throwaway_database`).

Only the standard library is imported here, so that every script's `--help` stays fast; a script
imports torch, transformers, psycopg and the like inside the functions that use them."""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
from pathlib import Path
from statistics import median
from typing import Any, Iterator

RESULTS_DIR = Path(__file__).resolve().parent / "results"
DEFAULT_HOME = "/tmp/mils-bench"
# The local PostgreSQL server the benchmarks make their databases on (the tests' server and variable).
PG_SERVER = os.environ.get("MILS_TEST_PG", "postgresql://postgres@127.0.0.1:5432")


def use_home(home: str | os.PathLike) -> Path:
    """Point MILS_HOME at `home` (before any worker module reads it) and quiet the libraries."""
    path = Path(home).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    os.environ["MILS_HOME"] = str(path)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    return path


def quiet_transformers() -> None:
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def _lscpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown"
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def _mem_total_gib() -> float:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024**2, 1)
    return float("nan")


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "date_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "nproc": os.cpu_count(),
        "cpu_model": _lscpu_model(),
        "ram_gib": _mem_total_gib(),
        "python": platform.python_version(),
        "load_average_at_start": load_average(),
        "command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except ImportError:
        pass
    return info


def peak_rss_mib() -> float:
    """This process's peak resident set size: VmHWM of /proc/self/status where there is one (ru_maxrss
    would carry a parent's peak over a fork and exec), else ru_maxrss (KiB on Linux)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def write_results(name: str, data: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    tmp.replace(path)
    return path


def med(values: list[float]) -> float:
    return median(values) if values else float("nan")


def fmt_s(seconds: float) -> str:
    return f"{seconds:.2f}"


def md_table(headers: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in row) + " |")
    return "\n".join(lines)


def machine_line(info: dict[str, Any]) -> str:
    return (
        f"{info['date_utc']}; {info['nproc']} CPUs ({info['cpu_model']}), {info['ram_gib']} GiB RAM; "
        f"python {info['python']}, torch {info.get('torch', '?')} ({info.get('torch_threads', '?')} threads), "
        f"transformers {info.get('transformers', '?')}; load average at start {info['load_average_at_start']}"
    )


# --------------------------------------------------------------------------- throw-away databases


def libpq_url(url: str) -> str:
    """A SQLAlchemy URL (postgresql+psycopg://...) as psycopg and psql take it (postgresql://...)."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def _drop(admin: Any, name: str) -> None:
    # Connections still open (a pool, a worker killed mid-query) would make DROP fail: end them
    # first. pg_terminate_backend works on every PostgreSQL version, DROP ... WITH (FORCE) from 13.
    admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
                  "AND pid <> pg_backend_pid()", (name,))
    admin.execute(f'DROP DATABASE IF EXISTS "{name}"')


@contextlib.contextmanager
def throwaway_database(name: str, *, server: str | None = None, upgrade: bool = False) -> Iterator[str]:
    """A new PostgreSQL database `name` on `server` (default PG_SERVER, i.e. `MILS_TEST_PG` or the
    local server), dropped when the block ends, however it ends; yields its SQLAlchemy URL
    (postgresql+psycopg://...; `libpq_url` gives psycopg's form). A database of that name left by
    a run that crashed is dropped first. With `upgrade`, the schema is made by the migrations
    (`worker.store.db.upgrade`, as `mils db upgrade` does). Before the drop, this process's
    engines are disposed (`worker.store.db.forget_engines`, where it was imported).

        with _common.throwaway_database("mils_bench_example", upgrade=True) as url:
            ...
    """
    import psycopg

    server = (server or PG_SERVER).rstrip("/")
    with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
        _drop(admin, name)
        admin.execute(f'CREATE DATABASE "{name}"')
    url = f"{server.replace('postgresql://', 'postgresql+psycopg://', 1)}/{name}"
    try:
        if upgrade:
            from worker.store.db import upgrade as upgrade_schema

            upgrade_schema(url)
        yield url
    finally:
        db = sys.modules.get("worker.store.db")
        if db is not None:
            db.forget_engines()
        with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
            _drop(admin, name)
