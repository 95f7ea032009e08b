"""Generators that speak the OpenAI chat-completions API.

- `openai_generator`: any OpenAI-compatible server (vLLM, SGLang, llama.cpp's server, Ollama,
  `transformers serve`, OpenAI itself) through the official `openai` client.
- `llamacpp_generator`: llama.cpp in this process (`xllamacpp`) for a GGUF file, the embedded
  default among them; `start_llamacpp` is also what `mils llm-server` serves over HTTP.

Both answer the same request dicts. A step's conversations go out as parallel requests, one per
conversation, each with its own seed (seed + i), so an engine with continuous batching decodes
them together and a step takes as long as its longest share, not one long list. The API's `n` is
not used: every server takes parallel requests (llama.cpp's server long refused n > 1), engines
with prefix caching (vLLM, SGLang, llama.cpp) share the common prompt between them just as `n`
would, and one seed per request keeps each share reproducible on its own.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from worker import config
from worker.core import Completion, GeneratorError, GeneratorUnavailable, Message
from worker.models.specs import ModelLoadError, parse_openai_spec
from worker.models.openmp import release_openmp_threads

log = logging.getLogger(__name__)

# One request: the chat-completions fields (messages, seed, temperature, ...) -> the response as a dict.
Send = Callable[[dict[str, Any]], dict[str, Any]]


class ChatGenerator:
    """The Generator protocol over a chat-completions endpoint (`send`). Safe to call from
    several threads at once: a worker running several jobs shares one (see worker.runner)."""

    concurrent = True  # the runner need not serialize calls into it

    def __init__(self, send: Send, name: str, version: str, extra: dict[str, Any] | None = None,
                 max_parallel: int = 64, before_requests: Callable[[], None] | None = None) -> None:
        self.send = send
        # Run in the calling thread before a step's requests go out (llama.cpp in this process:
        # release_openmp_threads).
        self.before_requests = before_requests
        self.name = name
        self.version = version
        # Engine-specific sampling fields added to every request (e.g. llama.cpp's DRY penalty).
        self.extra = dict(extra or {})
        self.max_parallel = max_parallel
        # What the server said it is, from the last answer: {"model": id, "fingerprint": ...}.
        self.served: dict[str, str] = {}
        # Tokens the server reported (prompt_tokens, completion_tokens, requests), for benchmarks and
        # operators; updated from several threads.
        self.usage: Counter = Counter()
        self._usage_lock = threading.Lock()

    def complete(
        self,
        conversations: Sequence[list[Message]],
        *,
        seed: int,
        temperature: float,
        top_p: float,
        max_tokens: int,
    ) -> list[str]:
        """One answer per conversation, asked for in parallel; conversation i is sampled with
        seed + i. Raises GeneratorUnavailable (server unreachable or overloaded: try the step again
        later) or GeneratorError (an error answer, an empty or malformed answer, a timeout)."""
        requests = [
            {"messages": list(c), "seed": (seed + i) % 2**31, "temperature": temperature, "top_p": top_p,
             "max_tokens": max_tokens, **self.extra}
            for i, c in enumerate(conversations)
        ]
        if self.before_requests is not None:
            self.before_requests()
        if len(requests) == 1:
            answers = [self.send(requests[0])]
        else:
            with ThreadPoolExecutor(max_workers=min(len(requests), self.max_parallel),
                                    thread_name_prefix="llm-request") as pool:
                answers = list(pool.map(self.send, requests))
        return [self._text(answer) for answer in answers]

    def _text(self, answer: Any) -> str:
        try:
            choice = answer["choices"][0]
            text = choice["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise GeneratorError(f"{self.name}: the answer is not a chat completion: {str(answer)[:200]!r}") from None
        if not isinstance(text, str) or not text.strip():
            raise GeneratorError(f"{self.name}: the LLM returned an empty answer "
                                 f"(finish_reason {choice.get('finish_reason')!r})")
        usage = answer.get("usage") or {}
        prompt, completion = _tokens(usage.get("prompt_tokens")), _tokens(usage.get("completion_tokens"))
        with self._usage_lock:
            self.usage.update(requests=1, prompt_tokens=prompt or 0, completion_tokens=completion or 0)
        self.served = {"model": str(answer.get("model") or ""), "fingerprint": str(answer.get("system_fingerprint") or "")}
        return Completion(text, prompt, completion)


def _tokens(value: Any) -> int | None:
    """A usage count as the engine reported it; None when it reported none (or not a count)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


# --------------------------------------------------------------------------- OpenAI-compatible servers


STANDARD_FIELDS = frozenset({"messages", "seed", "temperature", "top_p", "max_tokens"})


def openai_generator(spec: str) -> ChatGenerator:
    """A generator on an OpenAI-compatible server. Nothing is sent until the first step: a server
    that is down at load time only delays the jobs. The API key comes from OPENAI_API_KEY, never
    from the spec (specs are stored with every job and shown on its page)."""
    import openai

    model, url = parse_openai_spec(spec)
    timeout = config.llm_timeout()
    client = openai.OpenAI(
        base_url=url, api_key=os.environ.get("OPENAI_API_KEY") or "unused",
        timeout=timeout, max_retries=2,  # the client retries refused connections, 408, 429 and 5xx with backoff
    )
    where = str(client.base_url)

    def send(request: dict[str, Any]) -> dict[str, Any]:
        # Fields the API does not name (an engine's own sampling options) travel in the body as they are.
        standard = {k: v for k, v in request.items() if k in STANDARD_FIELDS}
        extra = {k: v for k, v in request.items() if k not in STANDARD_FIELDS}
        try:
            response = client.chat.completions.create(model=model, **standard, extra_body=extra or None)
        except openai.APITimeoutError:
            raise GeneratorError(f"LLM server {where} did not answer within {timeout:g} s "
                                 "(MILS_LLM_TIMEOUT)") from None
        except openai.APIConnectionError as exc:
            raise GeneratorUnavailable(f"LLM server {where} unreachable: {exc}") from None
        except (openai.InternalServerError, openai.RateLimitError) as exc:
            raise GeneratorUnavailable(f"LLM server {where} is unavailable: HTTP {exc.status_code}: "
                                       f"{_message(exc)}") from None
        except openai.APIStatusError as exc:
            raise GeneratorError(f"LLM server {where} refused the request: HTTP {exc.status_code}: "
                                 f"{_message(exc)}") from None
        except (openai.APIError, ValueError) as exc:  # a body that is not a chat completion
            raise GeneratorError(f"LLM server {where} answered junk: {str(exc)[:200]}") from None
        if not hasattr(response, "model_dump"):
            raise GeneratorError(f"LLM server {where} answered junk: {str(response)[:200]!r}")
        return response.model_dump()

    return ChatGenerator(send, name=spec, version=f"OpenAI-compatible server {where}, model {model}")


def _message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        return str(inner.get("message", inner) if isinstance(inner, dict) else inner)[:300]
    return str(exc)[:300]


# --------------------------------------------------------------------------- llama.cpp in this process

# Context per slot: the paper's prompt (50 examples of up to 20 words) plus a share's answer fit.
CONTEXT_PER_SLOT = 4096


def start_llamacpp(
    gguf: Path,
    *,
    slots: int,
    threads: int,
    host: str | None = None,
    port: int | None = None,
    reproducible: bool = True,
    context_per_slot: int = CONTEXT_PER_SLOT,
    alias: str | None = None,
):
    """llama.cpp's server on `gguf` inside this process (an `xllamacpp.Server`): requests through
    `.handle_chat_completions(dict)`, and over HTTP (OpenAI API under /v1) when `port` is given.

    reproducible: no prompt cache. A request decoded beside others gets slightly different logits (its
    batch has another size) and so, sometimes, another text; one decoded alone does not. Whether a prompt
    served partly from the cache does the same is not settled (an early check with 2 slots saw a
    different text; three repeats in benchmarks/llm_engines.py did not): reproducible runs keep it off.
    """
    import xllamacpp

    if not gguf.is_file():
        raise ModelLoadError(f"GGUF {str(gguf)!r}: no such file")
    params = xllamacpp.CommonParams()
    params.model.path = str(gguf)
    if alias:
        params.model_alias = {alias}  # the model id the server reports (else the file's path)
    params.n_parallel = slots
    params.n_ctx = context_per_slot * slots
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    params.cache_prompt = not reproducible
    params.verbosity = 0
    params.endpoint_metrics = True
    params.warmup = False  # the first request warms it; a start in about a second
    if port is not None:
        params.hostnames = [host or "127.0.0.1"]
        params.port = port
    try:
        return xllamacpp.Server(params)
    except RuntimeError as exc:
        raise ModelLoadError(f"llama.cpp cannot load {gguf}: {exc}") from None


def llamacpp_generator(gguf: Path, name: str, version: str, extra: dict[str, Any] | None = None) -> ChatGenerator:
    """A generator on llama.cpp in this process, with MILS_LLM_SLOTS parallel sequences and
    MILS_LLM_THREADS threads; each step's requests first release torch's idle OpenMP threads
    (release_openmp_threads). Several jobs' steps in one worker share it (it queues or batches them)."""
    import xllamacpp

    slots, threads = config.llm_slots(), config.llm_threads()
    server = start_llamacpp(gguf, slots=slots, threads=threads, reproducible=True, alias=name)

    def send(request: dict[str, Any]) -> dict[str, Any]:
        try:
            # Blocks without the GIL; with more requests than slots, llama.cpp queues the rest.
            answer = server.handle_chat_completions(request)
        except (ValueError, RuntimeError) as exc:
            raise GeneratorError(f"llama.cpp refused the request: {exc}") from None
        if isinstance(answer, dict) and "error" in answer:
            raise GeneratorError(f"llama.cpp: {answer['error']}")
        return answer

    engine = f"llama.cpp (xllamacpp {xllamacpp.__version__}) slots={slots} threads={threads}"
    return ChatGenerator(send, name=name, version=f"{version} {engine}", extra=extra, max_parallel=64,
                         before_requests=release_openmp_threads)
