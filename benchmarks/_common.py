"""Shared helpers of the benchmark scripts: the bench home, machine facts, results files."""

from __future__ import annotations

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
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"
DEFAULT_HOME = "/tmp/mils-bench"


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
