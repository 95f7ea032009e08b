"""What each step cost, stored with it: LLM requests, the tokens the engine reported, LLM and
scoring seconds, renders, rejected lines and the worker it ran on; added up per job and per
batch, shown in the API, on the pages, by `mils status` and in the results exports; "not
recorded" for steps stored before. A job here asks a real OpenAI client for its candidates, of a
fake server that reports fixed usage (tests/support/fake_llm_server.py); the test against a real
`mils llm-server` through a real worker is in tests/service/test_llm_engine.py.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from alembic import command
from sqlalchemy import select

from tests.support.fake_llm_server import FakeLLMServer
from worker.core import Completion, Settings
from worker.core.optimizer import Proposals
from worker.kinds import TASK_KINDS
from worker.ops import take_snapshot
from worker.runner import run_in_process
from worker.store import db as store_db
from worker.store.db import alembic_config, open_store, upgrade
from worker.store.queries import job_detail
from worker.store.schema import Job, Step
from worker.submission import job_request, store_job, task_input, user_files

SCORER = "py:tests.support.fakes:worker_scorer"


@pytest.fixture
def server():
    fake = FakeLLMServer("echo", delay=0.01).start()
    yield fake
    fake.close()


def _job(Session, generator: str, **settings) -> int:
    kind = TASK_KINDS["image-caption"]
    media, info = task_input(kind, sample="chelsea")
    request = job_request(kind.name, media, info, generator=generator, scorer=SCORER,
                          overrides={"steps": 2, "top_k": 3, "candidates": 4, **settings}, files=user_files(kind.name))
    with Session.begin() as session:
        return store_job(session, request)[0].id


def test_the_tokens_stored_are_those_the_engine_reported(db_url, server):
    Session = open_store(db_url, auto_upgrade=True)
    job_id = _job(Session, f"openai:fake@{server.url}")
    results = list(run_in_process(Session, job_id))
    assert len(results) == 3
    # The fake answers 3 captions a request with usage 10 + 10: 4 candidates take 2 or 3 requests.
    assert len(server.requests) == sum(r.llm_requests for r in results) >= 4
    with Session() as session:
        rows = session.scalars(select(Step).where(Step.job_id == job_id).order_by(Step.step)).all()
        detail = job_detail(session, job_id)
        snapshot = take_snapshot(session)
    assert [s.llm_requests for s in rows] == [r.llm_requests for r in results] and rows[0].llm_requests == 0
    for row in rows[1:]:
        assert row.llm_requests >= 2
        assert (row.prompt_tokens, row.completion_tokens) == (10 * row.llm_requests, 10 * row.llm_requests)
        assert row.generation_seconds > 0 and row.worker and row.renders == 0
    cost = detail["cost"]
    assert cost["llm_requests"] == len(server.requests) and cost["prompt_tokens"] == 10 * len(server.requests)
    assert cost["unrecorded_steps"] == 0 and len(cost["workers"]) == 1 and "OpenAI-compatible" in cost["engine"]
    assert [s["cost"]["llm_requests"] for s in detail["steps"]] == [s.llm_requests for s in rows]
    # The fake's answers repeat: the lines that were not new candidates are counted per step.
    assert cost["rejected_lines"] == sum(row.rejected_lines for row in rows) > 0
    assert snapshot.llm_by_model[f"openai:fake@{server.url}"] == {
        "requests": len(server.requests), "prompt_tokens": 10 * len(server.requests),
        "completion_tokens": 10 * len(server.requests)}


def test_tokens_an_engine_did_not_report_are_not_reported_not_zero():
    asked = Proposals()
    asked.count([Completion("1. a cat", 7, 3), Completion("1. a dog", 5, 2)])
    assert (asked.requests, asked.prompt_tokens, asked.completion_tokens) == (2, 12, 5)
    asked.count(["1. a bird"])  # a generator that reports nothing (a plain str)
    assert (asked.requests, asked.prompt_tokens, asked.completion_tokens) == (3, None, None)


def test_a_job_stored_before_costs_were_recorded_reads_not_recorded(db_url):
    engine = store_db.get_engine(db_url)
    command.upgrade(alembic_config(db_url), "0013")
    now = datetime.now(timezone.utc)
    with engine.begin() as connection:
        job_id = connection.execute(Job.__table__.insert().values(
            task="image-caption", status="succeeded", settings=Settings(steps=1).to_dict(), generator="embedded",
            scorer="embedded", model_versions={}, input_info={}, options={}, created_at=now, priority=0,
            auto_resumes=0, attempts=0, cancel_requested=False).returning(Job.__table__.c.id)).scalar_one()
        columns = {c.name for c in Step.__table__.columns} - {"llm_requests", "prompt_tokens", "completion_tokens",
                                                             "renders", "rejected_lines", "worker"}
        for number in (0, 1):
            row = dict(job_id=job_id, step=number, started_at=now, finished_at=now, best_score=0.5,
                       best_text="a cat", mean_topk=0.4, n_candidates=3, improved=True, generation_seconds=1.0,
                       scoring_seconds=0.5)
            assert set(row) <= columns
            connection.execute(Step.__table__.insert().values(**row))
    upgrade(db_url)
    Session = open_store(db_url)
    with Session() as session:
        detail = job_detail(session, job_id)
    assert detail["cost"] is None and [s["cost"] for s in detail["steps"]] == [None, None]

    from web import create_app

    app = create_app({"DATABASE_URL": db_url, "WTF_CSRF_ENABLED": False, "TESTING": True})
    page = app.test_client().get(f"/jobs/{job_id}").get_data(as_text=True)
    assert "Cost: not recorded" in page


def test_a_batch_adds_its_items_costs_up_per_step_and_exports_them(pg, queue_db, server, tmp_path):
    """Two items through the real queueing of a batch, run here: the batch's totals, each item's
    export columns and the evaluation's cost per item at each step are sums of the stored steps."""
    import csv
    import io

    from worker.batches import evaluate_batch, export_results, submit_batch
    from worker.datasets import open_dataset
    from worker.media.samples import sample_path
    from worker.store.batches import batch_detail

    for name in ("chelsea", "astronaut"):
        (tmp_path / f"{name}.png").write_bytes(sample_path(name).read_bytes())
    (tmp_path / "items.csv").write_text("path,reference\nchelsea.png,a cat lying on a rug\n"
                                        "astronaut.png,a woman in a space suit\n")
    Session = open_store(pg)
    submit_batch(Session, "costs", open_dataset(tmp_path / "items.csv", "image"), generator=f"openai:fake@{server.url}",
                 scorer=SCORER, overrides={"steps": 2, "top_k": 3, "candidates": 4})
    with Session() as session:
        job_ids = session.scalars(select(Job.id).order_by(Job.id)).all()
    for job_id in job_ids:
        list(run_in_process(Session, job_id))
    with Session() as session:
        rows = session.scalars(select(Step)).all()
        cost = batch_detail(session, "costs")["cost"]
        exported = list(csv.DictReader(io.StringIO("".join(export_results(session, "costs", "csv")))))
    requests = sum(r.llm_requests for r in rows)
    assert requests == len(server.requests) and cost["llm_requests"] == requests
    assert cost["items"] == 2 and cost["per_item"]["prompt_tokens"] == 10 * requests / 2
    for item in exported:
        mine = [r for r in rows if r.job_id == int(item["job_id"])]
        assert int(item["llm_requests"]) == sum(r.llm_requests for r in mine)
        assert int(item["completion_tokens"]) == 10 * sum(r.llm_requests for r in mine)
        assert float(item["llm_seconds"]) == pytest.approx(sum(r.generation_seconds for r in mine), abs=1e-3)

    metrics = evaluate_batch(Session, "costs")
    for entry in metrics["per_step"]:
        done = [r for r in rows if r.step <= entry["step"]]
        assert entry["cost_per_item"]["llm_requests"] == pytest.approx(sum(r.llm_requests for r in done) / 2)
        assert entry["cost_per_item"]["tokens"] == pytest.approx(20 * sum(r.llm_requests for r in done) / 2)

    # The batch page: totals as whole numbers, means per item to one decimal (not 2,262.643).
    from web import create_app

    app = create_app({"DATABASE_URL": pg, "WTF_CSRF_ENABLED": False, "TESTING": True})
    page = app.test_client().get("/batches/costs").get_data(as_text=True)
    each = cost["per_item"]
    assert f"{cost['prompt_tokens']:,} in prompts" in page
    assert f"per item: {each['llm_requests']:,.1f} LLM request(s), tokens {each['prompt_tokens']:,.1f} in prompts" in page
    with app.app_context():  # a mean of three items, as the compare page showed it before it was rounded
        spent = app.jinja_env.get_template("_cost.html").module.spent
        shown = " ".join(str(spent(dict(each, llm_requests=7.929, prompt_tokens=2262.643, rejected_lines=28.571))).split())
    assert "7.9 LLM request(s), tokens 2,262.6 in prompts" in shown and "28.6 answer line(s)" in shown
