"""Peak memory of making the embedded LLM's int8 copy: `quantize_dynamic` copying the fp32 model (what
`worker.models.llm.int8_dynamic` does, inplace=False) vs quantising it in place.

    python benchmarks/int8_peak_memory.py [--home /tmp/mils-bench]

Each variant runs in a fresh subprocess (ru_maxrss is per process): `AutoModelForCausalLM.from_pretrained`
of the safetensors cache in MILS_HOME (fp32), then `torch.ao.quantization.quantize_dynamic(model,
{nn.Linear}, dtype=qint8, inplace=...)`, the fp32 reference dropped; it reports peak RSS after the load
and after quantising, and the wall time. The cache must exist: the transformers path builds it at
its first load (e.g. `MILS_HOME=/tmp/mils-bench mils caption --sample chelsea --llm
embedded-transformers --steps 1`, or `python benchmarks/fluency_lm.py`); the llama.cpp default
does not make it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402


def child(inplace: bool) -> None:
    import warnings

    import torch
    from transformers import AutoModelForCausalLM

    from worker.config import cache_dir
    from worker.models import llm

    path = cache_dir("models") / llm.EMBEDDED_QWEN_NAME
    if not (path / "config.json").exists():
        raise SystemExit(f"no LLM cache at {path}: build it first (see the docstring)")
    started = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    loaded = time.perf_counter()
    after_load = _common.peak_rss_mib()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantised = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8,
                                                           inplace=inplace)
    del model
    done = time.perf_counter()
    assert any("Linear" in type(m).__name__ and "quantized" in type(m).__module__ for m in quantised.modules())
    print(json.dumps({"inplace": inplace, "peak_rss_after_load_mib": after_load,
                      "peak_rss_after_quantise_mib": _common.peak_rss_mib(),
                      "load_seconds": round(loaded - started, 2), "quantise_seconds": round(done - loaded, 2)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", default=_common.DEFAULT_HOME, help="MILS_HOME holding the LLM cache")
    parser.add_argument("--out", default="int8_peak_memory")
    parser.add_argument("--child", choices=["copy", "inplace"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    home = _common.use_home(args.home)
    if args.child:
        _common.quiet_transformers()
        child(args.child == "inplace")
        return

    info = _common.machine_info()
    info["mils_home"] = str(home)
    rows = []
    for variant in ("copy", "inplace"):
        proc = subprocess.run([sys.executable, __file__, "--home", str(home), "--child", variant],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"{variant} child failed:\n{proc.stderr[-3000:]}")
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(rows[-1], file=sys.stderr, flush=True)
    info["load_average_at_end"] = _common.load_average()
    path = _common.write_results(args.out, {"benchmark": "int8_peak_memory", "machine": info, "results": rows})

    print(f"Machine: {_common.machine_line(info)}\n")
    print(f"Command: `{info['command']}` (MILS_HOME={home}); each row a fresh process\n")
    copy, inplace = rows
    print(_common.md_table(
        ["quantize_dynamic", "peak RSS after from_pretrained MiB", "peak RSS after quantising MiB",
         "load s", "quantise s"],
        [[("inplace=False (as `int8_dynamic`)" if not r["inplace"] else "inplace=True"),
          f"{r['peak_rss_after_load_mib']:.0f}", f"{r['peak_rss_after_quantise_mib']:.0f}",
          f"{r['load_seconds']:.1f}", f"{r['quantise_seconds']:.1f}"] for r in rows]))
    print(f"\nIn place / copy peak = {inplace['peak_rss_after_quantise_mib'] / copy['peak_rss_after_quantise_mib']:.2f} "
          f"({copy['peak_rss_after_quantise_mib'] - inplace['peak_rss_after_quantise_mib']:.0f} MiB less).")
    print(f"\nResults: {path}")


if __name__ == "__main__":
    main()
