"""Audio captioning: checking and decoding recordings (PyAV), the CLAP scorer on a tiny
randomly initialised CLAP built from a config (no weights exist offline; this proves the
wiring, batching, clipping and seeding, not the quality), and audio jobs through the CLI,
the store (resume) and the API.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import av
import numpy as np
import pytest

from tests.support.media import recording
from tests.support.services import assert_one_error_line, run_embedded

from worker.media import MediaError
from worker.media.audio import AudioInput, probe_audio
from worker.kinds import TASK_KINDS

ROOT = Path(__file__).resolve().parents[2]
AUDIO = TASK_KINDS["audio-caption"]
FAKE_LLM = "py:tests.support.fakes:worker_generator"


@pytest.fixture(scope="module")
def tiny_clap(tmp_path_factory) -> Path:
    """A CLAP with random weights (about 100k parameters), its processor and a byte-level BPE
    tokenizer trained here on the audio pool, saved as a checkpoint folder."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import (ClapAudioConfig, ClapConfig, ClapFeatureExtractor, ClapModel, ClapProcessor,
                              ClapTextConfig, RobertaTokenizer)

    folder = tmp_path_factory.mktemp("tiny-clap")
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(AUDIO.pool, vocab_size=400, min_frequency=1,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    bpe.save_model(str(folder))
    tokenizer = RobertaTokenizer.from_pretrained(str(folder), model_max_length=64)
    torch.manual_seed(0)
    audio = ClapAudioConfig(hidden_size=64, depths=[1, 1, 1, 1], num_attention_heads=[1, 1, 1, 1],
                            patch_embeds_hidden_size=8, window_size=8, projection_hidden_size=32)
    text = ClapTextConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                          intermediate_size=37, max_position_embeddings=80, projection_hidden_size=32,
                          pad_token_id=tokenizer.pad_token_id)
    model = ClapModel(ClapConfig(text_config=text.to_dict(), audio_config=audio.to_dict(), projection_dim=16))
    # rand_trunc: the unfused model's input (no fusion channels); clips never exceed 10 s here.
    processor = ClapProcessor(feature_extractor=ClapFeatureExtractor(truncation="rand_trunc"), tokenizer=tokenizer)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


# --------------------------------------------------------------------------- decoding


def test_probe_and_decode_resample_to_the_rate_asked_for():
    data = recording(2.0, rate=22_050)
    info = probe_audio(data, "tone.wav")
    assert (info.duration, info.sample_rate, info.channels, info.media_type) == (2.0, 22_050, 1, "audio/wav")
    clip = AudioInput(data, "tone.wav", 10)
    assert len(clip.samples(48_000)) == pytest.approx(96_000, abs=64)
    assert float(np.abs(clip.samples(48_000)).max()) == pytest.approx(3000 / 32768, rel=0.05)


def test_a_long_recording_is_cut_into_clips():
    clip = AudioInput(recording(25.4, rate=8_000), "long.wav", 10)
    assert [round(len(c) / 8_000, 1) for c in clip.clips(8_000)] == [10.0, 10.0, 5.4]
    # A tail under a second is dropped when there are other clips.
    assert [round(len(c) / 8_000, 1) for c in AudioInput(recording(20.5, rate=8_000), "x.wav", 10).clips(8_000)] == [10.0, 10.0]


def test_flac_and_mp3_are_read_too():
    for fmt, codec, media_type in [("flac", "flac", "audio/flac"), ("mp3", "libmp3lame", "audio/mpeg")]:
        media, info = AUDIO.check_input(recording(1.5, rate=44_100, fmt=fmt, codec=codec), f"tone.{fmt}")
        assert media.media_type == media_type and info["duration"] == pytest.approx(1.5, abs=0.1)


BAD_AUDIO = [
    ("not audio", lambda: b"no sound in here" * 40, r"not audio in a format we can read"),
    ("silent", lambda: recording(2.0, amplitude=0), r"the recording is silent"),
    ("too long", lambda: recording(301, rate=8_000), r"over the 300-second limit"),
    ("too short", lambda: recording(0.2), r"too short to describe"),
    ("sample rate too low", lambda: recording(2.0, rate=4_000), r"sample rate of 4000 Hz is below the 8000 Hz minimum"),
    ("no audio stream", lambda: _png(), r"has no audio stream"),
]


def _png() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("make, message", [b[1:] for b in BAD_AUDIO], ids=[b[0] for b in BAD_AUDIO])
def test_bad_recordings_are_refused_with_a_reason(make, message):
    with pytest.raises(MediaError, match=message):
        AUDIO.check_input(make(), "input.wav")


# --------------------------------------------------------------------------- the CLAP scorer


def test_clap_scorer_clips_batches_and_is_deterministic(tiny_clap):
    from worker.models import load_scorer

    scorer = load_scorer(f"clap:{tiny_clap}")
    assert scorer.name == f"clap:{tiny_clap}" and scorer.sampling_rate == 48_000
    long = scorer.encode_sample(AudioInput(recording(25.0), "long.wav", 10))
    assert long.shape == (16,) and np.linalg.norm(long) == pytest.approx(1.0, abs=1e-5)
    # Three 10-second clips averaged is not the same as one 25-second clip (truncated to 10 s).
    assert not np.allclose(scorer.encode_sample(AudioInput(recording(25.0), "long.wav", 25)), long)
    texts = list(AUDIO.pool[:300])
    batched = scorer.score(long, texts)
    singles = [scorer.score(long, [t])[0] for t in texts[:20]]
    assert np.allclose(batched[:20], singles, atol=1e-5)  # padding in a batch changes nothing
    assert scorer.score(long, texts) == batched
    other = scorer.encode_sample(AudioInput(recording(3.0, amplitude=12000), "loud.wav", 10))
    assert not np.allclose(other, long)


def test_caption_audio_runs_a_job_with_the_clap_scorer(tiny_clap, tmp_path):
    sound = tmp_path / "tone.wav"
    sound.write_bytes(recording(12.0))
    home = tmp_path / "home"
    out = run_embedded("caption-audio", str(sound), "--scorer", f"clap:{tiny_clap}", "--llm", FAKE_LLM,
                       "--clip-seconds", "5", "--steps", "2", "--candidates", "5", "--top-k", "3", "--seed", "4",
                       "--json", home=home, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout)
    best = [s["best_score"] for s in result["steps"]]
    assert len(best) == 3 and best == sorted(best)
    summary = json.loads(run_embedded("status", str(result["job_id"]), "--json", home=home, timeout=300).stdout)
    assert summary["task"] == "audio-caption" and summary["status"] == "succeeded"
    assert summary["settings"]["max_words"] == 19
    assert summary["model_versions"]["scorer"]["name"] == f"clap:{tiny_clap}"
    # Same seed, same input, same models: the same job.
    again = json.loads(run_embedded("caption-audio", str(sound), "--scorer", f"clap:{tiny_clap}", "--llm", FAKE_LLM,
                                    "--clip-seconds", "5", "--steps", "2", "--candidates", "5", "--top-k", "3",
                                    "--seed", "4", "--json", home=home, timeout=300).stdout)
    assert [s["best_text"] for s in again["steps"]] == [s["best_text"] for s in result["steps"]]


@pytest.mark.parametrize("args, message", [
    (["caption-audio", "{wav}"], r"audio-caption needs an audio-text scorer: --scorer clap:ID_OR_PATH"),
    (["caption-audio", "{wav}", "--scorer", "open_clip:ViT-B-32"], r"audio-caption needs an audio-text scorer"),
    (["caption", "--sample", "chelsea", "--scorer", "clap:{clap}"], r"is an audio-text scorer; this task scores pictures"),
    (["caption-audio", "--sample", "chelsea", "--scorer", "clap:{clap}"], r"an audio task needs an audio file"),
    (["caption-audio", "{wav}", "--scorer", "clap:/no/such/clap"], r"CLAP '/no/such/clap': no such directory"),
    (["caption-audio", "{wav}", "--scorer", "clap:{clap}", "--clip-seconds", "0"], r"clip_seconds must be between 1 and 30"),
    (["submit", "--task", "video-caption", "--sample", "chelsea", "--clip-seconds", "3"], r"--clip-seconds is for --task audio-caption"),
])
def test_bad_audio_commands_fail_with_one_error_line(tiny_clap, tmp_path, args, message):
    wav = tmp_path / "tone.wav"
    wav.write_bytes(recording(2.0))
    out = run_embedded(*[a.format(wav=wav, clap=tiny_clap) for a in args], "--llm", FAKE_LLM,
                       home=tmp_path / "home", timeout=300)
    assert_one_error_line(out, message)


def test_an_interrupted_audio_job_resumes_to_the_same_result(tiny_clap, sqlite_url):
    """Steps 0-1 run, the process 'dies' (the job is left running, as a killed worker leaves
    it), the reaper marks it interrupted and resumes it; the rest runs in a fresh resolver.
    The outcome equals an uninterrupted job with the same seed."""
    from datetime import timedelta

    from sqlalchemy import update

    from worker.runner import JobModels, execute_step, run_in_process
    from worker.submission import job_request, store_job
    from worker.lifecycle import reap
    from worker.models import _from_factory, load_scorer
    from worker.store.queries import job_detail
    from worker.store.db import open_store
    from worker.store.schema import Job, JobStatus, utcnow


    Session = open_store(sqlite_url)
    media, info = AUDIO.check_input(recording(6.0), "tone.wav")

    def models(_g, _s):
        return JobModels(_from_factory(FAKE_LLM), load_scorer(f"clap:{tiny_clap}"))

    def new_job() -> int:
        with Session.begin() as s:
            return store_job(s, job_request("audio-caption", media, info, generator=FAKE_LLM,
                                            scorer=f"clap:{tiny_clap}", overrides=dict(steps=4, candidates=5, top_k=3,
                                                                                       seed=9),
                                            options={"clip_seconds": 3}))[0].id

    reference = new_job()
    list(run_in_process(Session, reference, models))
    interrupted = new_job()
    for _ in range(2):
        execute_step(Session, interrupted, models)
    with Session.begin() as s:
        # A worker took step 2 and died: running, its heartbeat an hour old.
        s.execute(update(Job).where(Job.id == interrupted).values(status=JobStatus.RUNNING,
                                                          heartbeat_at=utcnow() - timedelta(hours=1)))
        assert [(m.job_id, m.step) for m in reap(s, stale_after=60)] == [(interrupted, 2)]
    list(run_in_process(Session, interrupted, models))
    with Session() as s:
        want, got = job_detail(s, reference), job_detail(s, interrupted)
    assert got["status"] == "succeeded" and [e["kind"] for e in got["events"]].count("interrupted") == 1
    assert got["steps"] and [(x["best_text"], x["best_score"]) for x in got["steps"]] == \
        [(x["best_text"], x["best_score"]) for x in want["steps"]]
    assert got["top_k"] == want["top_k"]


def test_the_api_takes_an_audio_job(tiny_clap, pg, queue_db):
    from web import create_app

    client = create_app({"DATABASE_URL": pg, "WTF_CSRF_ENABLED": False}).test_client()
    made = client.post("/api/jobs", data={"task": "audio-caption", "file": (io.BytesIO(recording(4.0)), "t.wav"),
                                          "scorer": f"clap:{tiny_clap}", "clip_seconds": "2"})
    assert made.status_code == 201, made.get_json()
    job = made.get_json()
    assert job["options"] == {"clip_seconds": 2} and job["input_media_type"] == "audio/wav"
    assert '<audio src="/jobs/' in client.get(f"/jobs/{job['id']}").get_data(as_text=True)
    refused = client.post("/api/jobs", data={"task": "audio-caption", "file": (io.BytesIO(recording(4.0)), "t.wav")})
    assert refused.status_code == 400 and "needs an audio-text scorer" in refused.get_json()["error"]["message"]
    silent = client.post("/api/jobs", data={"task": "audio-caption", "scorer": f"clap:{tiny_clap}",
                                            "file": (io.BytesIO(recording(2.0, amplitude=0)), "s.wav")})
    assert silent.status_code == 400 and "s.wav: the recording is silent" in silent.get_json()["error"]["message"]
    assert [j["id"] for j in client.get("/api/jobs").get_json()["jobs"]] == [job["id"]]