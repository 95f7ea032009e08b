"""Variants of a batch and jobs continued to more steps, through the JSON API and the pages, with
Flask's test client on the real PostgreSQL and a private SQLite-backed broker queue per test; the
jobs run in this process on the tiny fakes (`run_in_process`), whose generator writes only words
of the examples in its prompt, and records every prompt it gets.

What is checked: a variant has its batch's item keys, references and stored inputs (the same
artifact rows, nothing stored again) and differs in the settings sent alone; bad variants are
refused and store nothing; a succeeded job continued to more steps keeps its committed rows as
they were, its next step's prompt is the stored top K of its last step, and its event log says
so; a batch continued to more steps continues every job and is evaluated over the new steps.
"""

from __future__ import annotations

import io
import re

import pytest
from sqlalchemy import func, select

from tests.support.fakes import HiddenCaptionScorer, ScriptedGenerator, prompt_examples
from tests.support.services import queued
from tests.web.test_batch_api import (Session, app, client, created, error_of, job_statuses,  # noqa: F401
                                      post_batch, stored_items, table_counts, three_images_archive)
from worker.batches import captions_by_step
from worker.runner import JobModels, run_in_process
from worker.store.schema import Artifact, Batch, Candidate, Job, JobEvent, Step, TopEntry

TARGET = "a small orange square on a grey background"
FAKE_LLM, FAKE_SCORER = "py:tests.support.fakes:worker_generator", "py:tests.support.fakes:worker_scorer"


def run_jobs(Session, job_ids, generator: ScriptedGenerator | None = None) -> ScriptedGenerator:
    """Run each job to the end in this process on the fakes; returns the generator (its calls)."""
    generator = generator or ScriptedGenerator(extra_words=["orange", "square", "grey", "small"])

    def models(_generator: str, _scorer: str) -> JobModels:
        return JobModels(generator, HiddenCaptionScorer(TARGET))

    for job_id in job_ids:
        for _ in run_in_process(Session, job_id, models):
            pass
    return generator


def jobs_of(Session, name: str) -> dict[str, Job]:
    """key -> the item's job row (detached), of batch `name`."""
    with Session() as s:
        return {item["item_key"]: s.get(Job, item["job_id"]) for item in stored_items(Session, name)
                if item["job_id"] is not None}


def snapshot(Session, job_id: int) -> dict:
    """The job's steps, candidates and top-K rows as stored."""
    with Session() as s:
        return {
            "steps": s.execute(select(Step.id, Step.step, Step.started_at, Step.finished_at, Step.best_score,
                                      Step.best_text, Step.mean_topk, Step.n_candidates, Step.improved)
                               .where(Step.job_id == job_id).order_by(Step.step)).all(),
            "candidates": s.execute(select(Candidate.id, Candidate.step, Candidate.text, Candidate.score,
                                           Candidate.rank)
                                    .where(Candidate.job_id == job_id).order_by(Candidate.id)).all(),
            "top": s.execute(select(TopEntry.step, TopEntry.rank, TopEntry.candidate_id)
                             .where(TopEntry.job_id == job_id).order_by(TopEntry.step, TopEntry.rank)).all(),
        }


def stored_top(Session, job_id: int, step: int) -> list[tuple[float, str]]:
    with Session() as s:
        return [tuple(r) for r in s.execute(
            select(Candidate.score, Candidate.text).join(TopEntry, TopEntry.candidate_id == Candidate.id)
            .where(TopEntry.job_id == job_id, TopEntry.step == step).order_by(TopEntry.rank))]


# --------------------------------------------------------------------------- variants


def test_a_variant_takes_the_items_and_stored_inputs_and_changes_only_what_is_sent(client, Session, queue_db):
    created(post_batch(client, "base", archive=(three_images_archive(), "set.zip")))
    base_jobs = jobs_of(Session, "base")
    with Session() as s:
        artifacts = s.scalar(select(func.count()).select_from(Artifact))
    before = queued(queue_db)

    body = created(client.post("/api/batches", data={"name": "base-k3", "like": "base", "top_k": "3"}))
    assert body["variant"] == {"name": "base-k3", "like": "base", "items": 3, "rejected": 0, "queued": 3,
                               "changes": {"settings.top_k": [5, 3]}, "note": None}
    assert body["like"] == "base" and body["by_status"] == {"queued": 3}
    old, new = stored_items(Session, "base"), stored_items(Session, "base-k3")
    same = ("item_key", "source", "references", "position", "error")
    assert [{k: i[k] for k in same} for i in new] == [{k: i[k] for k in same} for i in old]
    variant_jobs = jobs_of(Session, "base-k3")
    assert set(variant_jobs) == set(base_jobs) == {"a", "b", "c"}
    for key, job in variant_jobs.items():
        was = base_jobs[key]
        assert job.id != was.id
        assert (job.input_sha256, job.input_name, job.input_media_type, job.input_info) == \
            (was.input_sha256, was.input_name, was.input_media_type, was.input_info)
        assert {k: v for k, v in job.settings.items() if job.settings[k] != was.settings[k]} == {"top_k": 3}
        assert (job.generator, job.scorer, job.options, job.priority) == (was.generator, was.scorer, was.options,
                                                                           was.priority)
    with Session() as s:
        assert s.scalar(select(func.count()).select_from(Artifact)) == artifacts  # nothing stored again
        new_batch, old_batch = (s.scalar(select(Batch).where(Batch.name == n)) for n in ("base-k3", "base"))
        assert {k for k in new_batch.settings if new_batch.settings[k] != old_batch.settings[k]} == {"top_k"}
    assert sorted(queued(queue_db)[len(before):]) == sorted((j.id, 0) for j in variant_jobs.values())

    run_jobs(Session, [j.id for j in variant_jobs.values()])
    assert client.get("/api/batches/base-k3").get_json()["by_status"] == {"succeeded": 3}
    with Session() as s:
        tops = s.execute(select(TopEntry.job_id, func.count()).where(TopEntry.step == 2)
                         .where(TopEntry.job_id.in_([j.id for j in variant_jobs.values()]))
                         .group_by(TopEntry.job_id)).all()
    assert sorted(n for _, n in tops) == [3, 3, 3]  # its own top K

    # Nothing changed: a replicate, with a note.
    body = created(client.post("/api/batches", data={"name": "base-again", "like": "base"}))
    assert body["variant"]["changes"] == {} and "a replicate" in body["variant"]["note"]


@pytest.mark.parametrize("fields, files, status, message", [
    ({"name": "v", "like": "nope"}, {}, 404, "no batch 'nope'"),
    ({"name": "base", "like": "base"}, {}, 409, "batch 'base' already exists; a variant is a new batch"),
    ({"name": "v", "like": "base"}, {"archive": "set.zip"}, 400, "a variant takes the items of batch 'base': "
                                                                 "send no archive"),
    ({"name": "v", "like": "base", "split": "test"}, {}, 400, "send no split"),
    ({"name": "v", "like": "base", "pool_file": "pool.txt"}, {}, 400,
     "pool_file must be a file upload (curl -F 'pool_file=@PATH'), not a text field"),
    ({"name": "v", "like": "base", "top_k": "0"}, {}, 400, "top_k must be"),
    ({"name": "v", "like": "base", "task": "audio-caption"}, {}, 400, "a variant of it runs the same task"),
    ({"name": "bad name", "like": "base"}, {}, 400, "a batch name is"),
])
def test_bad_variants_are_refused_and_store_nothing(client, Session, queue_db, fields, files, status, message):
    created(post_batch(client, "base", archive=(three_images_archive(), "set.zip")))
    counts = table_counts(Session)
    data = dict(fields)
    if files:
        data["archive"] = (io.BytesIO(three_images_archive()), files["archive"])
    assert message in error_of(client.post("/api/batches", data=data), status)
    assert table_counts(Session) == counts


def test_run_a_variant_from_the_batch_page(client, Session):
    created(post_batch(client, "paged", archive=(three_images_archive(), "set.zip"), seed=5))
    page = client.get("/batches/paged").get_data(as_text=True)
    form = re.search(r'<form[^>]*id="variant-form".*?</form>', page, re.S).group(0)
    assert re.search(r'name="top_k"[^>]*value="5"', form) and re.search(r'name="seed"[^>]*value="5"', form)
    # The form sends every field, prefilled with the batch's values; one is changed.
    fields = dict(re.findall(r'name="(\w+)"[^>]*value="([^"]*)"', form))
    fields.update(name="paged-seed6", seed="6")
    response = client.post("/batches/paged/variant", data=fields)
    assert response.status_code == 302 and response.headers["Location"] == "/batches/paged-seed6"
    page = client.get("/batches/paged-seed6").get_data(as_text=True)
    assert "batch paged-seed6, a variant of paged: 3 item(s); settings.seed 5 -&gt; 6" in page
    assert re.search(r'id="batch-like">paged</a>', page)
    assert {i["item_key"] for i in stored_items(Session, "paged-seed6")} == {"a", "b", "c"}
    again = client.post("/batches/paged/variant", data=fields)  # the name is taken now
    assert again.headers["Location"] == "/batches/paged"
    assert "already exists" in client.get("/batches/paged").get_data(as_text=True)


# --------------------------------------------------------------------------- more steps


def submit_job(client, **fields) -> int:
    data = {"sample": "chelsea", "llm": FAKE_LLM, "scorer": FAKE_SCORER, "steps": "2", "candidates": "6",
            "top_k": "5", **{k: str(v) for k, v in fields.items()}}
    return created(client.post("/api/jobs", data=data))["id"]


def test_a_succeeded_job_continues_from_its_stored_top_k_and_keeps_its_steps(client, Session, queue_db):
    job_id = submit_job(client)
    run_jobs(Session, [job_id])
    assert job_statuses(Session, [job_id]) == {job_id: "succeeded"}
    kept, top_of_2 = snapshot(Session, job_id), stored_top(Session, job_id, 2)
    assert [row.step for row in kept["steps"]] == [0, 1, 2]

    for steps in ("2", "1"):  # not more than it has: refused, nothing changed
        assert "has 2 steps; to continue it give more steps" in error_of(
            client.post(f"/api/jobs/{job_id}/resume", data={"steps": steps}), 409)
    assert "already succeeded" in error_of(client.post(f"/api/jobs/{job_id}/resume"), 409)
    assert "steps must be between 1 and 1000" in error_of(
        client.post(f"/api/jobs/{job_id}/resume", data={"steps": "1001"}), 400)
    assert snapshot(Session, job_id) == kept and job_statuses(Session, [job_id]) == {job_id: "succeeded"}

    before = queued(queue_db)
    resumed = client.post(f"/api/jobs/{job_id}/resume", data={"steps": "4"})
    assert resumed.status_code == 202 and resumed.get_json()["resumed_at_step"] == 3
    assert resumed.get_json()["status"] == "queued" and resumed.get_json()["steps_total"] == 5
    assert queued(queue_db)[len(before):] == [(job_id, 3)]

    generator = run_jobs(Session, [job_id])
    assert job_statuses(Session, [job_id]) == {job_id: "succeeded"}
    after = snapshot(Session, job_id)
    assert [row.step for row in after["steps"]] == [0, 1, 2, 3, 4]
    assert after["steps"][:3] == kept["steps"]  # steps 0..2: the same rows, untouched
    assert [c for c in after["candidates"] if c.step <= 2] == kept["candidates"]
    assert [t for t in after["top"] if t.step <= 2] == kept["top"]
    # Step 3's prompt shows the stored top K of step 2, best first, with its scores; the fake
    # writes only words of what its prompt shows (and its extra words).
    first = generator.calls[0].conversations[0]
    assert [(round(score, 4), text) for score, text in prompt_examples(first)] == \
        [(round(score, 4), text) for score, text in top_of_2]
    assert after["steps"][3].best_score >= kept["steps"][2].best_score
    with Session() as s:
        events = s.execute(select(JobEvent.kind, JobEvent.detail).where(JobEvent.job_id == job_id)
                           .order_by(JobEvent.id)).all()
        assert s.get(Job, job_id).settings["steps"] == 4
    assert ("continued", "to 4 steps (was 2)") in events
    assert ("resumed", "from step 3 (was succeeded)") in events


def test_a_job_that_patience_stopped_goes_on_to_the_steps_asked(client, Session):
    job_id = submit_job(client, patience=1, steps=6)

    def stuck(_generator: str, _scorer: str) -> JobModels:  # never improves: patience stops it at step 1
        from tests.support.fakes import NonsenseGenerator
        return JobModels(NonsenseGenerator(), HiddenCaptionScorer(TARGET))

    for _ in run_in_process(Session, job_id, stuck):
        pass
    assert [row.step for row in snapshot(Session, job_id)["steps"]] == [0, 1]
    page = client.get(f"/jobs/{job_id}").get_data(as_text=True)  # the job page's form
    assert re.search(r'id="continue-job".*?name="steps" min="7"', page, re.S)
    response = client.post(f"/jobs/{job_id}/resume", data={"steps": "8"})
    assert response.status_code == 302
    assert f"job {job_id} resumed at step 2, to 8 steps" in client.get(f"/jobs/{job_id}").get_data(as_text=True)
    for _ in run_in_process(Session, job_id, stuck):
        pass
    assert [row.step for row in snapshot(Session, job_id)["steps"]] == list(range(9))
    with Session() as s:
        job = s.get(Job, job_id)
        assert job.settings["patience"] is None and job.settings["steps"] == 8
        detail = s.scalar(select(JobEvent.detail).where(JobEvent.job_id == job_id, JobEvent.kind == "continued"))
    assert detail == ("to 8 steps (was 6); patience 1 is off from now on: it had stopped the job early, "
                      "after step 1")


def test_a_batch_continues_every_job_to_more_steps_and_is_evaluated_over_them(client, Session, queue_db):
    created(post_batch(client, "longer", archive=(three_images_archive(), "set.zip")))
    job_ids = [j.id for j in jobs_of(Session, "longer").values()]
    run_jobs(Session, job_ids[:2])
    client.post("/api/batches/longer/cancel")  # the third: cancelled before its first step
    kept = {j: snapshot(Session, j) for j in job_ids}
    counts = table_counts(Session)

    # A batch's job alone is not continued: its batch's jobs share their settings.
    assert "is an item of batch 'longer', whose jobs share their settings" in error_of(
        client.post(f"/api/jobs/{job_ids[0]}/resume", data={"steps": "3"}), 409)

    assert "has 2 steps; to continue it give more steps" in error_of(
        client.post("/api/batches/longer/resume", data={"steps": "2"}), 409)
    assert table_counts(Session) == counts and {j: snapshot(Session, j) for j in job_ids} == kept

    before = queued(queue_db)
    resumed = client.post("/api/batches/longer/resume", data={"steps": "3"})
    assert resumed.status_code == 202
    body = resumed.get_json()
    assert body["resumed"] == 3 and body["by_status"] == {"queued": 3} and body["settings"]["steps"] == 3
    assert sorted(queued(queue_db)[len(before):]) == sorted([(job_ids[0], 3), (job_ids[1], 3), (job_ids[2], 0)])
    # Jobs of it queued: more steps wait until they are done.
    assert "3 job(s) queued or running" in error_of(client.post("/api/batches/longer/resume", data={"steps": "4"}), 409)

    run_jobs(Session, job_ids)
    done = client.get("/api/batches/longer").get_json()
    assert done["by_status"] == {"succeeded": 3} and done["steps_done"] == done["steps_total"] == 3 * 4
    for j in job_ids[:2]:
        after = snapshot(Session, j)
        assert after["steps"][:3] == kept[j]["steps"] and [r.step for r in after["steps"]] == [0, 1, 2, 3]
    with Session() as s:
        batch_id = s.scalar(select(Batch.id).where(Batch.name == "longer"))
        final, by_step = captions_by_step(s, batch_id, 3)
    assert sorted(by_step) == [0, 1, 2, 3] and all(len(by_step[n]) == 3 for n in by_step)
    assert by_step[3] == final

    # The page's form continues it again, to 5 steps.
    page = client.get("/batches/longer").get_data(as_text=True)
    assert re.search(r'id="continue-batch".*?name="steps" min="4"', page, re.S)
    response = client.post("/batches/longer/resume", data={"steps": "5"})
    assert response.status_code == 302
    assert "batch longer: 3 job(s) queued again, to 5 steps" in client.get("/batches/longer").get_data(as_text=True)
    assert client.get("/api/batches/longer").get_json()["settings"]["steps"] == 5


def test_the_variant_and_continue_forms_need_their_csrf_token(pg, queue_db, Session):
    from web import create_app

    client = create_app({"DATABASE_URL": pg}).test_client()
    created(post_batch(client, "guarded", archive=(three_images_archive(), "set.zip")))  # the API: a token
    page = client.get("/batches/guarded").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    counts = table_counts(Session)
    assert client.post("/batches/guarded/variant", data={"name": "guarded-2", "top_k": "2"}).status_code == 400
    assert client.post("/batches/guarded/resume", data={"steps": "3"}).status_code == 400
    assert table_counts(Session) == counts
    accepted = client.post("/batches/guarded/variant", data={"csrf_token": token, "name": "guarded-2", "top_k": "2"})
    assert accepted.status_code == 302 and accepted.headers["Location"] == "/batches/guarded-2"
    assert client.get("/api/batches/guarded-2").get_json()["settings"]["top_k"] == 2
