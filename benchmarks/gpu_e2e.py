"""MILS end to end on a GPU, with random weights in production shapes: captions per hour of a real
`mils worker --concurrency C` whose LLM is `transformers serve --continuous-batching` (reached as
`openai:DIR@http://127.0.0.1:PORT/v1`, as a deployment reaches vLLM) and whose scorer is open_clip
in SigLIP-SO400M's shapes; and where a step's time goes. (gpu_step.py times `generate` alone.)

The LLM is Llama-3.1-8B-Instruct's architecture (gpu_step.LLAMA_31_8B) with random weights in
bfloat16, saved with a tokenizer that has a chat template: no Llama-3 tokenizer exists offline, so
the embedded Qwen2.5's (exported from its GGUF) is used and the vocabulary follows it (151,936
rows instead of 128,256: about 1% more parameters). The scorer is open_clip's ViT-SO400M-14-SigLIP
config with random weights ("@random"); its tokenizer is open_clip's bundled CLIP BPE (SigLIP's
own is a hub download), so its text vocabulary is 49,408 instead of 32,000 (the lookup table only).

Random weights write junk: an answer almost never ends before `max_tokens` (the end token is one of
151,936) and most of its lines are not captions. Kept as it is, on purpose: every request decodes its
whole budget (the upper bound of a real answer, so LLM seconds are an upper bound too), the parser
rejects what is not a caption (reported as rejected lines), and a step asks again for the missing
captions up to `max_generation_rounds` times (3), as it would with a weak model. Tokens,
requests and rejected lines are reported beside the seconds, so a step's cost can be rescaled.

Jobs are the bundled sample photos, repeated: C x --rounds jobs per level (a batch with
--max-in-flight C), the paper's settings (10 steps, N=50 candidates, K=50); the store is the
embedded SQLite one in --home unless --database-url and --broker-url name PostgreSQL and Redis.
Per level it reports images per hour, tokens and seconds per image, and per step the mean of the
store's step records: LLM seconds, scoring seconds, the rest of the step (other), and the wait
between a job's steps (queue). Writes benchmarks/results/gpu_e2e.json (tiny: gpu_e2e_tiny.json).

On a GPU machine with torch, CUDA and transformers but no weights and no network, the rest travels
in one ignored folder (about 38 MiB: the tokenizer, 11, and the wheels of WHEELS, 27). Here, once:

    python benchmarks/gpu_e2e.py --export-tokenizer .gpu-e2e/tokenizer
    python -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .gpu-e2e/whl $(python benchmarks/gpu_e2e.py --wheels)

There (the working tree and .gpu-e2e carried; this checkout's worker runs from the tree, uninstalled):

    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .gpu-e2e/whl/*.whl
    PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 python3 benchmarks/gpu_e2e.py --tokenizer .gpu-e2e/tokenizer \
        --home /tmp/mils-gpu-e2e --in-flight 1 16 64

    python benchmarks/gpu_e2e.py --tiny    # tiny models on the CPU, 1 and 2 in flight: checks the script
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402
from gpu_step import LLAMA_31_8B  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# The CLI of this checkout (not of wherever the package was installed from): `mils ARGS`.
MILS = [sys.executable, "-c", "import sys; from worker.cli import main; sys.argv[0] = 'mils'; main()"]

TOKENIZER = Path(_common.DEFAULT_HOME) / "gpu-e2e-tokenizer"
# What a GPU machine with torch, transformers' needs and scikit-image/-learn lacks, for the CLI, the
# worker (Celery, SQLAlchemy, open_clip, openai) and `transformers serve` (as pinned here; this
# transformers over an older one there).
WHEELS = ["transformers==5.24.0", "celery==5.7.0", "kombu==5.7.0", "billiard==4.3.2", "vine==5.1.0", "amqp==5.4.2",
          "click-didyoumean==0.3.1", "click-repl==0.4.1", "click-plugins==1.1.1.2", "prompt_toolkit==3.0.52",
          "wcwidth==0.7.0", "tzlocal==5.4.5", "SQLAlchemy==2.1.9", "alembic==1.20.1", "Mako==1.4.3",
          "open_clip_torch==3.3.0", "ftfy==6.3.1", "openai==3.57.0", "httpx2==2.17.0", "httpcore2==2.17.0",
          "truststore==0.10.5", "jiter==0.19.0", "sniffio==1.3.1", "pydantic==2.13.4", "pydantic_core==2.46.4",
          "annotated-types==0.7.0", "typing-inspection==0.4.2", "fastapi==0.165.0", "starlette==1.10.0",
          "uvicorn==0.55.0", "opentelemetry-api==1.45.3"]
PHOTOS = ["chelsea", "coffee", "rocket", "camera", "motorcycle", "horse", "coins", "astronaut", "china", "flower",
          "moon", "hubble", "page", "retina"]
TINY_LLAMA = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=4096)
# open_clip configs: SigLIP-SO400M/14 at 224 px as open_clip ships it, with the bundled CLIP
# tokenizer (see above); and a tiny ViT for --tiny.
SIGLIP_SO400M = {
    "embed_dim": 1152, "init_logit_bias": -10, "custom_text": True,
    "vision_cfg": {"image_size": 224, "timm_model_name": "vit_so400m_patch14_siglip_224",
                   "timm_model_pretrained": False, "timm_pool": "map", "timm_proj": "none"},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 1152, "heads": 16, "layers": 27,
                 "mlp_ratio": 3.7362, "no_causal_mask": True, "proj_bias": True, "pool_type": "last",
                 "norm_kwargs": {"eps": 1e-06}},
}
TINY_CLIP = {"embed_dim": 32,
             "vision_cfg": {"image_size": 64, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
             "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}


def export_tokenizer(target: Path) -> Path:
    """The embedded Qwen2.5's tokenizer (with its chat template) saved to `target`, once: read from
    its GGUF (the wheels are joined into MILS_HOME's model cache the first time, about a minute)."""
    if (target / "tokenizer.json").is_file():
        return target
    from transformers import AutoTokenizer

    from worker.models.embedded_llm import embedded_gguf

    gguf = embedded_gguf()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tokenizer.save_pretrained(target)
    return target


def build_llm(target: Path, tokenizer_dir: Path, tiny: bool) -> Path:
    """A random-weight Llama (8B's shapes, or tiny) with the tokenizer, saved to `target` for
    `transformers serve`; kept between runs (the 8B one is 16 GB)."""
    if (target / "config.json").is_file():
        return target
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    shape = dict(LLAMA_31_8B, **TINY_LLAMA) if tiny else dict(LLAMA_31_8B)
    # Untied embeddings (as Llama-3.1-8B): tied random ones make the model repeat its last token.
    config = LlamaConfig(**dict(shape, vocab_size=len(tokenizer), tie_word_embeddings=False), dtype="bfloat16",
                         bos_token_id=tokenizer.pad_token_id, eos_token_id=end, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)  # made in bfloat16: 16 GB on the GPU, not 32 first
    try:
        with torch.device("cpu" if tiny else "cuda"):
            model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(torch.float32)
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    partial.rename(target)
    del model
    if not tiny:
        torch.cuda.empty_cache()  # the server and the worker need the GPU's memory, not this process
    return target


def start_server(model_dir: Path, port: int, tiny: bool, log: Path) -> subprocess.Popen:
    """`transformers serve DIR --continuous-batching` on 127.0.0.1:port, answering once (the first
    request sets up the paged KV cache: not measured)."""
    command = [sys.executable, "-c", "import sys; from transformers.cli.transformers import main; sys.argv[0] = "
               "'transformers'; sys.exit(main())", "serve", str(model_dir), "--continuous-batching",
               "--host", "127.0.0.1", "--port", str(port), "--device", "cpu" if tiny else "cuda"]
    if tiny:  # a small KV cache: the default sizes it from the memory, minutes on a CPU
        command += ["--cb-num-blocks", "64", "--cb-block-size", "32"]
    else:  # the KV cache takes up to 90% of the free memory by default: leave room for the worker's scorer
        command += ["--cb-max-memory-percent", "0.7"]
    server = subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}/v1"
    deadline = time.time() + 900
    while True:
        if server.poll() is not None or time.time() > deadline:
            stop(server)
            raise SystemExit(f"transformers serve did not start; its log: {log}\n{log.read_text()[-3000:]}")
        try:
            urllib.request.urlopen(f"{base}/models", timeout=2)
            break
        except OSError:
            time.sleep(1)
    body = json.dumps({"model": str(model_dir), "messages": [{"role": "user", "content": "Hello"}],
                       "max_tokens": 8}).encode()
    request = urllib.request.Request(f"{base}/chat/completions", body, {"Content-Type": "application/json"})
    urllib.request.urlopen(request, timeout=900).read()
    return server


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def mils(*argv: str) -> str:
    out = subprocess.run([*MILS, *argv], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"mils {' '.join(argv)}: exit {out.returncode}\n{out.stderr[-3000:]}")
    return out.stdout


def run_level(home: Path, in_flight: int, jobs: int, llm: str, scorer: str, settings: list[str]) -> dict:
    """One batch of `jobs` photos, `in_flight` at once, through a fresh `mils worker
    --concurrency in_flight`; what its steps recorded, summed up (`summarize`)."""
    from scorer_mrr import photo_bytes

    name = f"e2e-{in_flight}"
    folder = home / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    for i in range(jobs):
        photo = PHOTOS[i % len(PHOTOS)]
        (folder / f"{i:04d}-{photo}.png").write_bytes(photo_bytes(photo))
    mils("batch", "submit", name, str(folder), "--llm", llm, "--scorer", scorer, "--max-in-flight", str(in_flight),
         "--seed", "0", *settings)
    started = time.perf_counter()
    worker = subprocess.Popen([*MILS, "worker", "--concurrency", str(in_flight),
                               "--name", f"{name}@bench"], stdout=(home / f"{name}-worker.log").open("w"),
                              stderr=subprocess.STDOUT, start_new_session=True)
    try:
        while True:
            time.sleep(2)
            if worker.poll() is not None:
                raise SystemExit(f"the worker exited; its log: {home / f'{name}-worker.log'}")
            progress = json.loads(mils("batch", "status", name, "--json"))
            if progress["finished"]:
                break
    finally:
        stop(worker)
    return {"in_flight": in_flight, "jobs": jobs, "submit_to_done_seconds": round(time.perf_counter() - started, 1),
            **summarize(name)}


class StepRecord(NamedTuple):
    """What the store recorded of one step (counts None before migration 0014 read as 0)."""

    job_id: int
    step: int
    started_at: datetime
    finished_at: datetime
    llm_seconds: float
    scoring_seconds: float
    llm_requests: int
    prompt_tokens: int
    completion_tokens: int
    rejected_lines: int
    candidates: int

    @property
    def seconds(self) -> float:
        return (self.finished_at - self.started_at).total_seconds()


def summarize(batch: str) -> dict:
    """From the store's step records of `batch`: images per hour over the span from its first step's
    start to its last step's end, tokens and seconds per image, and per optimization step (step 0,
    the bootstrap, apart) the means of step, LLM, scoring and other seconds and of the wait before it."""
    from sqlalchemy import select

    from worker.store.db import open_store
    from worker.store.schema import Batch, BatchItem, Job, JobStatus, Step

    with open_store().begin() as session:
        job_ids = session.scalars(select(BatchItem.job_id).join(Batch).where(Batch.name == batch)).all()
        statuses = session.scalars(select(Job.status).where(Job.id.in_(job_ids))).all()
        steps = [StepRecord(s.job_id, s.step, s.started_at, s.finished_at, s.generation_seconds, s.scoring_seconds,
                            s.llm_requests or 0, s.prompt_tokens or 0, s.completion_tokens or 0, s.rejected_lines or 0,
                            s.n_candidates)
                 for s in session.scalars(select(Step).where(Step.job_id.in_(job_ids))
                                          .order_by(Step.job_id, Step.step))]
    n = len(job_ids)
    if not steps or len(statuses) < n or any(s != JobStatus.SUCCEEDED for s in statuses):
        raise SystemExit(f"batch {batch}: not every job succeeded ({sorted(map(str, statuses))}); see `mils jobs`")
    span = (max(s.finished_at for s in steps) - min(s.started_at for s in steps)).total_seconds()
    optimization = [s for s in steps if s.step > 0]
    waits = [(s.started_at - before.finished_at).total_seconds()
             for before, s in zip(steps, steps[1:]) if before.job_id == s.job_id]
    mean = lambda values: round(sum(values) / len(values), 3) if values else 0.0  # noqa: E731
    completion = sum(s.completion_tokens for s in steps)
    return {
        "succeeded": len(statuses), "steps_recorded": len(steps),
        "span_seconds": round(span, 1), "images_per_hour": round(n * 3600 / span, 1),
        "seconds_per_image": round(span / n, 2), "job_seconds_mean": round(span_per_job(steps), 1),
        "prompt_tokens_per_image": round(sum(s.prompt_tokens for s in steps) / n),
        "completion_tokens_per_image": round(completion / n),
        "completion_tokens_per_second": round(completion / span, 1),
        "llm_requests_per_step": mean([s.llm_requests for s in optimization]),
        "rejected_lines_per_step": mean([s.rejected_lines for s in optimization]),
        "candidates_per_step": mean([s.candidates for s in optimization]),
        "bootstrap_seconds_mean": mean([s.seconds for s in steps if s.step == 0]),
        "per_step": {"step_seconds": mean([s.seconds for s in optimization]),
                     "llm_seconds": mean([s.llm_seconds for s in optimization]),
                     "scoring_seconds": mean([s.scoring_seconds for s in optimization]),
                     "other_seconds": mean([s.seconds - s.llm_seconds - s.scoring_seconds for s in optimization]),
                     "queue_seconds": mean(waits)},
    }


def span_per_job(steps: list[StepRecord]) -> float:
    """The mean of each job's first step start to last step end (its latency once running)."""
    spans: dict[int, tuple] = {}
    for s in steps:
        first, last = spans.get(s.job_id, (s.started_at, s.finished_at))
        spans[s.job_id] = (min(first, s.started_at), max(last, s.finished_at))
    return sum((last - first).total_seconds() for first, last in spans.values()) / len(spans)


def save(out: str, data: dict) -> Path:
    if not out.endswith(".json"):
        return _common.write_results(out, data)
    path = Path(out)
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="tiny models on the CPU, 1 and 2 in flight, few steps")
    parser.add_argument("--in-flight", type=int, nargs="+", help="jobs in flight (default 1 16 64; tiny: 1 2)")
    parser.add_argument("--rounds", type=int, default=1, help="jobs per level = in flight x rounds")
    parser.add_argument("--steps", type=int, help="default 10 (paper); tiny: 1")
    parser.add_argument("--candidates", type=int, help="N, default 50 (paper); tiny: 2")
    parser.add_argument("--top-k", type=int, help="K, default 50 (paper); tiny: 4")
    parser.add_argument("--home", default="/tmp/mils-gpu-e2e", help="MILS_HOME: store, queue, model folders, logs")
    parser.add_argument("--tokenizer", default=str(TOKENIZER), help="a tokenizer folder with a chat template "
                        "(made from the embedded GGUF, joined in MILS_HOME or /tmp/mils-bench, when missing)")
    parser.add_argument("--export-tokenizer", metavar="DIR", help="only save the tokenizer to DIR (to carry it)")
    parser.add_argument("--wheels", action="store_true", help="only print the packages a GPU machine lacks")
    parser.add_argument("--database-url", help="MILS_DATABASE_URL (default: SQLite in --home)")
    parser.add_argument("--broker-url", help="MILS_BROKER_URL (default: the SQLite queue in --home)")
    parser.add_argument("--port", type=int, default=18440)
    parser.add_argument("--out", help="results file name in benchmarks/results (default gpu_e2e, tiny: "
                        "gpu_e2e_tiny), or a path ending in .json")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))  # this checkout's worker package, here and in the children
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    if args.wheels:
        print(" ".join(WHEELS))
        return
    if args.export_tokenizer:
        _common.use_home(os.environ.get("MILS_HOME", _common.DEFAULT_HOME))  # where the GGUF is joined
        print(export_tokenizer(Path(args.export_tokenizer).resolve()))
        return
    tiny = args.tiny
    in_flight = args.in_flight or ([1, 2] if tiny else [1, 16, 64])
    steps = args.steps or (1 if tiny else 10)
    candidates = args.candidates or (2 if tiny else 50)
    top_k = args.top_k or (4 if tiny else 50)
    settings = ["--steps", str(steps), "--candidates", str(candidates), "--top-k", str(top_k)]
    if tiny:  # short answers: a few words a caption (max_tokens follows max_words)
        settings += ["--max-words", "4"]

    tokenizer = Path(args.tokenizer).resolve()
    if not (tokenizer / "tokenizer.json").is_file():
        subprocess.run([sys.executable, __file__, "--export-tokenizer", str(tokenizer)], check=True)
    home = Path(args.home).resolve()
    for stale in ("mils.db", "queue.db"):  # a fresh store and queue; the model folders stay
        (home / stale).unlink(missing_ok=True)
    _common.use_home(home)
    if args.database_url:
        os.environ["MILS_DATABASE_URL"] = args.database_url
    if args.broker_url:
        os.environ["MILS_BROKER_URL"] = args.broker_url
    _common.quiet_transformers()
    info = _common.machine_info()
    if not tiny:
        import torch

        info["gpu"] = torch.cuda.get_device_name()
    model_dir = build_llm(home / ("llm-tiny" if tiny else "llm-llama-3.1-8b-shapes"), tokenizer, tiny)
    clip_config = home / ("tiny-clip.json" if tiny else "SigLIP-SO400M-14-e2e.json")
    clip_config.write_text(json.dumps(TINY_CLIP if tiny else SIGLIP_SO400M))
    llm = f"openai:{model_dir}@http://127.0.0.1:{args.port}/v1"
    scorer = f"open_clip:{clip_config}@random"
    mils("db", "upgrade")
    started = time.perf_counter()
    server = start_server(model_dir, args.port, tiny, home / "serve.log")
    server_seconds = time.perf_counter() - started
    out = args.out or ("gpu_e2e_tiny" if tiny else "gpu_e2e")
    data = {"benchmark": "gpu_e2e", "machine": info, "tiny": tiny, "llm": llm, "scorer": scorer,
            "llm_shapes": "tiny Llama" if tiny else "Llama-3.1-8B-Instruct, random weights, bfloat16",
            "scorer_shapes": "tiny ViT" if tiny else "ViT-SO400M-14-SigLIP, random weights, float16",
            "steps": steps, "candidates": candidates, "top_k": top_k, "server_start_seconds": round(server_seconds, 1),
            "levels": []}
    try:
        for level in in_flight:
            row = run_level(home, level, level * args.rounds, llm, scorer, settings)
            data["levels"].append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
            path = save(out, data)
    finally:
        stop(server)
    print(f"Machine: {_common.machine_line(info)}{'; ' + info['gpu'] if 'gpu' in info else ''}\n\n"
          f"Command: `{info['command']}`\n")
    print(_common.md_table(
        ["in flight", "jobs", "images/h", "s/image", "tokens/image (prompt+answer)", "answer tok/s",
         "step s", "LLM s", "scoring s", "other s", "queue s", "requests/step", "rejected lines/step"],
        [[r["in_flight"], r["jobs"], f"{r['images_per_hour']:.0f}", f"{r['seconds_per_image']:.1f}",
          f"{r['prompt_tokens_per_image']}+{r['completion_tokens_per_image']}",
          f"{r['completion_tokens_per_second']:.0f}",
          *(f"{r['per_step'][k]:.2f}" for k in ("step_seconds", "llm_seconds", "scoring_seconds", "other_seconds",
                                                   "queue_seconds")),
          f"{r['llm_requests_per_step']:.1f}", f"{r['rejected_lines_per_step']:.1f}"] for r in data["levels"]]))
    print(f"\nResults: {path}")


if __name__ == "__main__":
    main()
