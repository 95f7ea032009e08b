"""Batches compared side by side (`mils batch compare`, GET /api/compare, the /compare page): two
real batches of six bundled photos, their jobs run here with the tiny fakes of
tests/support/fakes.py through the store, evaluated against our hand-written references
(tests/data/photo_references.json) with pycocoevalcap; the intervals checked against
scipy.stats.bootstrap run directly on the same per-item differences.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from scipy.stats import bootstrap
from sqlalchemy import select

from web import create_app
from worker.batches import submit_batch
from worker.cli import cli
from worker.comparison import compare_batches, paired_interval
from worker.datasets import open_dataset
from worker.media.samples import sample_path
from worker.runner import run_in_process
from worker.store.db import open_store
from worker.store.schema import Job

REFERENCES = Path(__file__).resolve().parents[1] / "data" / "photo_references.json"
FAKES = {"generator": "py:tests.support.fakes:worker_generator", "scorer": "py:tests.support.fakes:worker_scorer"}


@pytest.fixture
def batches(pg, queue_db, tmp_path, monkeypatch):
    """Batches "a" (seed 0) and "b" (seed 1) over the same six photos, every job run."""
    monkeypatch.setenv("MILS_DATABASE_URL", pg)
    refs = json.loads(REFERENCES.read_text())
    chosen = refs["images"][:6]
    manifest = {"images": chosen, "annotations": [a for a in refs["annotations"]
                                                  if a["image_id"] in {i["id"] for i in chosen}]}
    for image in chosen:
        (tmp_path / image["file_name"]).write_bytes(sample_path(image["sample"]).read_bytes())
    (tmp_path / "captions.json").write_text(json.dumps(manifest))
    Session = open_store(pg)
    for name, seed in (("a", 0), ("b", 1)):
        submit_batch(Session, name, open_dataset(tmp_path / "captions.json", "image"), **FAKES,
                     overrides={"steps": 2, "top_k": 3, "candidates": 4, "seed": seed})
    with Session() as session:
        job_ids = session.scalars(select(Job.id).order_by(Job.id)).all()
    for job_id in job_ids:
        list(run_in_process(Session, job_id))
    return Session


def test_the_intervals_are_scipys_on_the_paired_per_item_differences(batches):
    found = compare_batches(batches, ["a", "b"])
    assert found["differences"] == ["settings.seed"]
    assert [b["name"] for b in found["batches"]] == ["a", "b"] and found["batches"][0]["succeeded"] == 6
    pair = found["paired"][0]
    assert (pair["baseline"], pair["batch"], pair["items"]) == ("a", "b", 6)
    for metric in ("CIDEr", "METEOR"):
        d = pair["metrics"][metric]
        differences = np.array(list(d["per_item"].values()))
        direct = bootstrap((differences,), np.mean, confidence_level=0.95, n_resamples=9999, method="BCa",
                           random_state=np.random.default_rng(0)).confidence_interval
        assert (d["low"], d["high"]) == (float(direct.low), float(direct.high))
        assert d["difference"] == pytest.approx(differences.mean()) == pytest.approx(d["mean"] - d["baseline_mean"])
        assert d["beyond_noise"] == (d["low"] > 0 or d["high"] < 0)
    # Each batch's final metrics are its own evaluation's (the same references, all items shared).
    assert found["metrics"]["a"]["final"]["items"] == 6 and len(found["metrics"]["b"]["per_step"]) == 3


def test_equal_differences_give_a_point_interval_and_a_bad_request_is_refused(batches):
    assert paired_interval([0.25, 0.25, 0.25]) == (0.25, 0.25)
    from worker.core import SettingsError
    from worker.store.batches import UnknownBatch

    with pytest.raises(SettingsError, match="two or more different batches"):
        compare_batches(batches, ["a", "a"])
    with pytest.raises(UnknownBatch):
        compare_batches(batches, ["a", "nope"])


def test_the_cli_the_api_and_the_page(batches, pg):
    out = CliRunner().invoke(cli, ["batch", "compare", "a", "b"])
    assert out.exit_code == 0, out.output
    assert "differences: settings.seed" in out.output and "b - a over 6 shared items: CIDEr" in out.output
    assert "95% CI [" in out.output
    refused = CliRunner().invoke(cli, ["batch", "compare", "a"])
    assert refused.exit_code != 0 and "two or more different batches" in refused.output

    client = create_app({"DATABASE_URL": pg, "WTF_CSRF_ENABLED": False, "TESTING": True}).test_client()
    answer = client.get("/api/compare?name=a&name=b")
    assert answer.status_code == 200 and answer.get_json()["paired"][0]["items"] == 6
    assert client.get("/api/compare?name=a").status_code == 400
    assert client.get("/api/compare?name=a&name=zzz").status_code == 404
    page = client.get("/compare?name=a&name=b").get_data(as_text=True)
    assert "Paired differences from a" in page and 'class="differs"' in page and "compare-chart-data" in page
    assert 'action="/compare"' in client.get("/batches/a").get_data(as_text=True)


def test_the_web_computes_a_comparison_once_until_a_batch_changes(batches, pg, monkeypatch):
    """The page and the API share one computation while the batches stand still; a batch continued
    to more steps is compared again, its new step included."""
    import worker.comparison
    from worker.batches import resume_batch

    worker.comparison._cache.clear()
    computed = []

    def counting(sessions, names, *args, **kwargs):
        computed.append(tuple(names))
        return compare_batches(sessions, names, *args, **kwargs)

    monkeypatch.setattr(worker.comparison, "compare_batches", counting)
    client = create_app({"DATABASE_URL": pg, "WTF_CSRF_ENABLED": False, "TESTING": True}).test_client()
    first = client.get("/api/compare?name=a&name=b").get_json()
    assert client.get("/compare?name=a&name=b").status_code == 200
    assert client.get("/api/compare?name=a&name=b").get_json() == first
    assert computed == [("a", "b")]
    assert client.get("/api/compare?name=b&name=a").status_code == 200  # another baseline: another comparison
    assert len(computed) == 2

    resume_batch(batches, "b", steps=3)
    with batches() as session:
        job_ids = session.scalars(select(Job.id).where(Job.status == "queued").order_by(Job.id)).all()
    for job_id in job_ids:
        list(run_in_process(batches, job_id))
    again = client.get("/api/compare?name=a&name=b").get_json()
    assert len(computed) == 3
    assert [row["step"] for row in again["metrics"]["b"]["per_step"]][-1] == 3
    assert [row["step"] for row in first["metrics"]["b"]["per_step"]][-1] == 2
