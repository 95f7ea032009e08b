"""LLM generators on transformers: any Hugging Face model id or local folder (and the embedded
Qwen on transformers, for comparison with the default llama.cpp path)."""

from __future__ import annotations

import logging
import os
import shutil
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase

from worker.config import cache_dir
from worker.core import Completion, Message
from worker.models.specs import ModelLoadError, check_generator_spec, pick_device
from worker.models.embedded_llm import EMBEDDED_QWEN_NAME, EMBEDDED_QWEN_SHA256, embedded_gguf

log = logging.getLogger(__name__)

# Measured on chelsea's top captions: without it the 0.5B model copied 9 of 10 lines.
EMBEDDED_NO_REPEAT_NGRAM = 6


class TransformersGenerator:
    """Batched sampling from a causal LM with its chat template."""

    def __init__(
        self, model, tokenizer: PreTrainedTokenizerBase, name: str, version: str,
        no_repeat_ngram: int | None = None,
    ) -> None:
        self.model = model.eval()
        # Small models copy the prompt's examples verbatim; forbidding any n-gram already in
        # the prompt or the answer makes every line new. Off for real (large) models.
        self.no_repeat_ngram = no_repeat_ngram
        self.tokenizer = tokenizer
        self.name = name
        self.version = version
        # Left padding, so every row of a batch ends where its generation starts.
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token

    @classmethod
    def from_pretrained(cls, spec: str, device: str | None = None) -> TransformersGenerator:
        device = pick_device(device)
        check_generator_spec(spec)
        # Half precision on a GPU (bf16 where supported); fp32 on a CPU, where halves are slow.
        dtype = torch.float32
        if device.startswith("cuda"):
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        try:
            tokenizer = AutoTokenizer.from_pretrained(spec)
            model = AutoModelForCausalLM.from_pretrained(spec, dtype=dtype).to(device)
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"cannot load LLM {spec!r}: {_first_line(exc)}") from None
        version = getattr(model.config, "_commit_hash", None) or "local"
        return cls(model, tokenizer, name=spec, version=version)

    def _prompt(self, conversation: list[Message]) -> str:
        if self.tokenizer.chat_template:
            return self.tokenizer.apply_chat_template(
                conversation, tokenize=False, add_generation_prompt=True
            )
        # A base model without a chat template: plain text, then the answer.
        return "\n\n".join(m["content"] for m in conversation) + "\n\n1."

    @torch.inference_mode()
    def complete(
        self,
        conversations: Sequence[list[Message]],
        *,
        seed: int,
        temperature: float,
        top_p: float,
        max_tokens: int,
    ) -> list[str]:
        prompts = [self._prompt(c) for c in conversations]
        batch = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        batch = batch.to(self.model.device)
        torch.manual_seed(seed)  # seeds CPU and every CUDA device
        output = self.model.generate(
            **batch,
            do_sample=True,
            temperature=temperature,
            top_p=top_p,
            max_new_tokens=max_tokens,
            pad_token_id=self.tokenizer.pad_token_id,
            no_repeat_ngram_size=self.no_repeat_ngram or 0,
        )
        new_tokens = output[:, batch["input_ids"].shape[1] :]
        texts = self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        # Counted with the model's tokenizer: the prompt's tokens without the padding, the answer's
        # up to its end (generate pads a finished row with pad_token_id).
        prompt_tokens = batch["attention_mask"].sum(dim=1).tolist()
        answer_tokens = (new_tokens != self.tokenizer.pad_token_id).sum(dim=1).tolist()
        return [Completion(text, int(p), int(a)) for text, p, a in zip(texts, prompt_tokens, answer_tokens, strict=True)]


def load_embedded_transformers(device: str | None = None) -> TransformersGenerator:
    """The embedded model on transformers (the default before llama.cpp; kept to compare the two,
    BENCHMARKS.md). The first load de-quantises the GGUF (about 40 s) and keeps a safetensors
    copy, so later loads skip that (about 8 s on 2 cores, most of it the int8 conversion)."""
    cached = cache_dir("models") / EMBEDDED_QWEN_NAME
    if not (cached / "config.json").exists():
        _build_embedded_qwen_cache(cached)
    started = time.perf_counter()
    generator = TransformersGenerator.from_pretrained(str(cached), device)
    log.info("loaded %s in %.1f s", EMBEDDED_QWEN_NAME, time.perf_counter() - started)
    precision = "fp32"
    if generator.model.device.type == "cpu":
        generator.model = int8_dynamic(generator.model)
        precision = "int8-dynamic"
    generator.name = "embedded-transformers"
    generator.no_repeat_ngram = EMBEDDED_NO_REPEAT_NGRAM
    generator.version = (
        f"{EMBEDDED_QWEN_NAME} sha256:{EMBEDDED_QWEN_SHA256[:12]} transformers {precision} "
        f"no_repeat_ngram={EMBEDDED_NO_REPEAT_NGRAM}"
    )
    return generator


def int8_dynamic(model: torch.nn.Module) -> torch.nn.Module:
    """int8 weights for every Linear layer, activations quantised on the fly: on 2 CPU cores
    about 4x the fp32 decoding speed (BENCHMARKS.md). CPU only."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's notice that torchao is its successor
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


def _build_embedded_qwen_cache(target: Path) -> None:
    # Per process: several workers may start at once on one empty model volume.
    work = target.with_name(f"{target.name}.partial-{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    gguf = embedded_gguf()
    log.info("de-quantising %s once; later starts use the cached copy", EMBEDDED_QWEN_NAME)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    model.hf_quantizer = None  # else save_pretrained refuses a GGUF-loaded model
    model.save_pretrained(work / "st")
    tokenizer.save_pretrained(work / "st")
    try:
        (work / "st").rename(target)  # atomic: a crash mid-build leaves no half cache
    except OSError:
        if not (target / "config.json").exists():  # not just another worker finishing first
            raise
    shutil.rmtree(work, ignore_errors=True)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
