"""The real adapter code paths (open_clip, transformers) on tiny randomly initialised models
built from configs: no download, seconds on a CPU. They prove the wiring, not the quality."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from worker import core
from worker.config import cache_dir
from worker.core import Settings
from worker.models import ModelLoadError, load_scorer
from worker.models.clip_scorer import OpenClipScorer
from worker.models.llm import TransformersGenerator
from worker.kinds.image import IMAGE_CAPTION

from tests.support.fakes import HiddenCaptionScorer, ScriptedGenerator

TINY_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}
POOL = ["A cat on a mat.", "A dog in a park.", "A cup of coffee.", "A red car on a road.", "Two birds in a tree."]


def photo() -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))


@pytest.fixture
def tiny_clip_spec(tmp_path):
    path = tmp_path / "tiny-clip-test.json"
    path.write_text(json.dumps(TINY_CLIP))
    return f"open_clip:{path}@random"


def test_open_clip_scorer_runs_a_mils_step(tiny_clip_spec, tmp_path):
    scorer = OpenClipScorer.from_spec(tiny_clip_spec.removeprefix("open_clip:"), "cpu")
    generator = ScriptedGenerator(extra_words=["sunset", "beach", "kitten"])
    settings = Settings(steps=2, top_k=3, candidates=4)
    results = list(core.run(POOL, generator, scorer, photo(), IMAGE_CAPTION, settings))

    assert [r.step for r in results] == [0, 1, 2]
    for result in results:
        assert all(-1.0 <= c.score <= 1.0 for c in result.candidates)
    assert results[-1].best.score >= results[0].best.score
    # Scores are cosines of unit vectors: recompute one by hand.
    features = scorer.encode_sample(photo())
    text = results[1].candidates[0].text
    assert np.isclose(np.linalg.norm(features), 1.0, atol=1e-5)
    assert np.isclose(scorer.score(features, [text])[0], results[1].candidates[0].score, atol=1e-5)


def test_pool_embeddings_are_cached_on_disk(tiny_clip_spec, monkeypatch):
    scorer = OpenClipScorer.from_spec(tiny_clip_spec.removeprefix("open_clip:"), "cpu")
    features = scorer.encode_sample(photo())
    assert not list(cache_dir("pool-embeddings").glob("*.npy"))
    first = scorer.score_pool(features, POOL)
    assert len(list(cache_dir("pool-embeddings").glob("*.npy"))) == 1
    # A second scorer object (a new worker process) must not re-embed the pool.
    again = OpenClipScorer(scorer.model, scorer.preprocess, scorer.tokenizer, scorer.name, scorer.version, "cpu")
    monkeypatch.setattr(again, "embed_texts", lambda texts: pytest.fail("pool was re-embedded"))
    assert again.score_pool(features, POOL) == pytest.approx(first)


def test_random_clip_inits_do_not_share_a_cache(tiny_clip_spec):
    a = OpenClipScorer.from_spec(tiny_clip_spec.removeprefix("open_clip:"), "cpu")
    b = OpenClipScorer.from_spec(tiny_clip_spec.removeprefix("open_clip:"), "cpu")
    assert a.version != b.version


@pytest.mark.parametrize(
    "spec, message",
    [
        ("open_clip:no-such-arch", "unknown open_clip architecture"),
        ("open_clip:/nonexistent/config.json", "no such file"),
        ("clip-please", "unknown scorer"),
    ],
)
def test_bad_scorer_specs_are_clear_errors(spec, message):
    with pytest.raises(ModelLoadError, match=message):
        load_scorer(spec)


def build_tiny_llm(path) -> None:
    """A 2-layer Qwen2 with random weights and a word-level tokenizer made here, saved like
    any Hugging Face checkpoint directory."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    words = sorted({w for text in POOL for w in text.replace(".", " .").split()} | {"1", "2", "3", ":", "\n"})
    specials = ["<pad>", "<|im_start|>", "<|im_end|>", "<unk>"]
    vocab = {token: i for i, token in enumerate(specials + words)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", eos_token="<|im_end|>", unk_token="<unk>",
    )
    tokenizer.chat_template = (
        "{% for m in messages %}<|im_start|> {{ m['role'] }} {{ m['content'] }} <|im_end|> {% endfor %}"
        "{% if add_generation_prompt %}<|im_start|> assistant {% endif %}"
    )
    config = Qwen2Config(
        vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512,
        eos_token_id=vocab["<|im_end|>"], pad_token_id=vocab["<pad>"], tie_word_embeddings=True,
    )
    import torch

    torch.manual_seed(0)
    Qwen2ForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)


@pytest.fixture
def tiny_llm(tmp_path):
    path = tmp_path / "tiny-llm"
    build_tiny_llm(path)
    return TransformersGenerator.from_pretrained(str(path), "cpu")


def test_transformers_generator_is_batched_seeded_and_bounded(tiny_llm):
    conversation = IMAGE_CAPTION.messages([core.Scored("A cat on a mat.", 0.5)], 3, 10)
    kwargs = dict(temperature=1.0, top_p=1.0, max_tokens=12)
    first = tiny_llm.complete([conversation, conversation], seed=7, **kwargs)
    again = tiny_llm.complete([conversation, conversation], seed=7, **kwargs)
    other = tiny_llm.complete([conversation, conversation], seed=8, **kwargs)
    assert len(first) == 2 and first == again
    assert other != first
    for text in first:
        assert len(tiny_llm.tokenizer(text, add_special_tokens=False)["input_ids"]) <= 12


def test_transformers_generator_runs_a_mils_step(tiny_llm):
    scorer = HiddenCaptionScorer("a cat on a mat")
    settings = Settings(steps=1, top_k=2, candidates=3, prompts_per_step=3, max_words=8)
    results = list(core.run(POOL, tiny_llm, scorer, photo(), IMAGE_CAPTION, settings))
    assert [r.step for r in results] == [0, 1]
    # Whatever the random model wrote, nothing already scored came back, and the best held.
    pool_keys = {core.normalize(t) for t in POOL}
    assert not {core.normalize(c.text) for c in results[1].candidates} & pool_keys
    assert results[1].best.score >= results[0].best.score


def test_unknown_llm_is_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match="no such directory"):
        TransformersGenerator.from_pretrained(str(tmp_path / "missing"), "cpu")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="cannot load LLM"):
        TransformersGenerator.from_pretrained(str(tmp_path / "empty"), "cpu")
