"""Variants of a batch and jobs continued to more steps, for real: `mils batch submit NEW --like OLD`,
`mils resume JOB --steps N` and `mils batch resume NAME --steps N` as commands, run by a `mils
worker` process on the tiny fakes of tests/support/fakes.py, with the machine's PostgreSQL and a
private Redis.

What is checked: a variant has its batch's item keys and stored inputs and differs in the setting
given alone, and runs to the end; refused commands exit non-zero with one message and store
nothing; a succeeded job continued keeps its committed rows as they were and its next step
writes only words of the stored top K it was shown (the fake generator writes only words of its
prompt's examples); a batch continued runs every job to the new number of steps.
"""

from __future__ import annotations

from tests.service.test_batches import batch_status, wait_finished, write_dataset
from tests.service.test_distributed import redis, redis_server, stack  # noqa: F401 (fixtures)
from tests.support.services import assert_one_error_line, query, scalar
from worker.core import normalize

GENERATOR = "py:tests.support.fakes:worker_generator"
SCORER = "py:tests.support.fakes:worker_scorer"
EXTRA_WORDS = {"tabby", "wooden", "sun", "sitting", "kitten"}  # tests.support.fakes.worker_generator's
FAST = {"MILS_FAKE_STEP_SECONDS": "0.02"}


def items(stack, name: str) -> dict[str, tuple]:
    """key -> (job id, input sha256, references) of batch `name`."""
    rows = query(stack.url, "SELECT i.item_key, j.id, j.input_sha256, i.references FROM batch_items i "
                            "JOIN batches b ON b.id = i.batch_id LEFT JOIN jobs j ON j.id = i.job_id "
                            "WHERE b.name = %s", (name,))
    return {key: (job_id, sha, refs) for key, job_id, sha, refs in rows}


def job_rows(stack, job_id: int) -> dict:
    return {
        "steps": query(stack.url, "SELECT id, step, started_at, finished_at, best_score, best_text, mean_topk, "
                                  "n_candidates, improved FROM steps WHERE job_id = %s ORDER BY step", (job_id,)),
        "candidates": query(stack.url, "SELECT id, step, text, score, rank FROM candidates WHERE job_id = %s "
                                       "ORDER BY id", (job_id,)),
        "top": query(stack.url, "SELECT step, rank, candidate_id FROM top_entries WHERE job_id = %s "
                                "ORDER BY step, rank", (job_id,)),
    }


def test_a_variant_runs_over_the_same_items_and_a_batch_continues_to_more_steps(stack, tmp_path):
    manifest = write_dataset(tmp_path, n=4)
    out = stack.cli("batch", "submit", "base", str(manifest), "--llm", GENERATOR, "--scorer", SCORER,
                    "--steps", "2", "--candidates", "4", "--top-k", "3", "--seed", "5")
    assert out.returncode == 0 and "4 item(s) queued, 0 already in it, 2 rejected" in out.stdout, out.stderr
    stack.start_worker("w", **FAST)
    assert wait_finished(stack, "base", timeout=120)["by_status"] == {"succeeded": 4}

    # Refused: an unknown batch, a dataset or a split with --like, a name taken; nothing stored.
    counts = scalar(stack.url, "SELECT count(*) FROM batches"), scalar(stack.url, "SELECT count(*) FROM jobs")
    assert_one_error_line(stack.cli("batch", "submit", "v", "--like", "nope"), "no batch 'nope'")
    assert_one_error_line(stack.cli("batch", "submit", "v", str(manifest), "--like", "base"),
                          "--like takes the items of batch 'base': give no DATASET")
    assert_one_error_line(stack.cli("batch", "submit", "v", "--like", "base", "--split", "test"), "give no --split")
    assert_one_error_line(stack.cli("batch", "submit", "base", "--like", "base", "--top-k", "2"),
                          "batch 'base' already exists; a variant is a new batch")
    assert_one_error_line(stack.cli("batch", "submit", "v"), "give a DATASET, or --like OLD")
    assert (scalar(stack.url, "SELECT count(*) FROM batches"), scalar(stack.url, "SELECT count(*) FROM jobs")) == counts

    out = stack.cli("batch", "submit", "base-k2", "--like", "base", "--top-k", "2")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["settings.top_k: 3 -> 2", "batch base-k2 (like base): 4 item(s), 4 queued now, "
                                                                 "2 rejected as in base"]
    old, new = items(stack, "base"), items(stack, "base-k2")
    assert set(new) == set(old) and len(new) == 6
    for key, (job_id, sha, refs) in new.items():
        assert (sha, refs) == old[key][1:] and (job_id is None) == (old[key][0] is None)
    settings = dict(query(stack.url, "SELECT name, settings FROM batches"))
    assert {k for k in settings["base"] if settings["base"][k] != settings["base-k2"][k]} == {"top_k"}
    assert wait_finished(stack, "base-k2", timeout=120)["by_status"] == {"succeeded": 4}
    assert {n for (n,) in query(stack.url, "SELECT count(*) FROM top_entries t JOIN batch_items i ON i.job_id = t.job_id "
                                           "JOIN batches b ON b.id = i.batch_id WHERE b.name = 'base-k2' AND t.step = 2 "
                                           "GROUP BY t.job_id")} == {2}
    replicate = stack.cli("batch", "submit", "base-again", "--like", "base")
    assert replicate.returncode == 0 and "note: nothing differs from batch 'base': a replicate" in replicate.stderr

    # The batch continued to 4 steps: every job goes on from its step 2, which stays as it was.
    kept = {key: job_rows(stack, job_id) for key, (job_id, _, _) in old.items() if job_id}
    assert_one_error_line(stack.cli("batch", "resume", "base", "--steps", "2"), "has 2 steps; to continue it")
    one = next(job_id for job_id, _, _ in old.values() if job_id)
    assert_one_error_line(stack.cli("resume", str(one), "--steps", "4"),
                          r"is an item of batch 'base'.*`mils batch resume base --steps 4`")
    out = stack.cli("batch", "resume", "base", "--steps", "4")
    assert out.returncode == 0 and "4 job(s) queued again, to 4 steps" in out.stdout, out.stderr
    done = wait_finished(stack, "base", timeout=120)
    assert done["by_status"] == {"succeeded": 4} and done["steps_done"] == done["steps_total"] == 4 * 5
    for key, rows in kept.items():
        after = job_rows(stack, old[key][0])
        assert [row[1] for row in after["steps"]] == [0, 1, 2, 3, 4]
        assert after["steps"][:3] == rows["steps"] and [c for c in after["candidates"] if c[1] <= 2] == rows["candidates"]
    assert batch_status(stack, "base-k2")["steps_total"] == 4 * 3  # the variant keeps its own


def test_a_succeeded_job_continues_for_more_steps_from_its_stored_top_k(stack):
    out = stack.cli("submit", "--sample", "chelsea", "--llm", GENERATOR, "--scorer", SCORER, "--steps", "2",
                    "--top-k", "3", "--candidates", "4", "--seed", "7")
    assert out.returncode == 0, out.stderr
    job_id = int(out.stdout.strip())
    stack.start_worker("w", **FAST)
    stack.wait_status(job_id, "succeeded")
    kept = job_rows(stack, job_id)
    top_of_2 = [text for (text,) in query(stack.url, "SELECT c.text FROM top_entries t JOIN candidates c "
                                                      "ON c.id = t.candidate_id WHERE t.job_id = %s AND t.step = 2",
                                          (job_id,))]

    for steps in ("2", "1"):
        assert_one_error_line(stack.cli("resume", str(job_id), "--steps", steps),
                              f"job {job_id} has 2 steps; to continue it give more steps than that, not {steps}")
    assert_one_error_line(stack.cli("resume", str(job_id)), "already succeeded")
    assert job_rows(stack, job_id) == kept and scalar(stack.url, "SELECT status FROM jobs") == "succeeded"

    out = stack.cli("resume", str(job_id), "--steps", "4")
    assert out.returncode == 0 and out.stdout.strip() == f"job {job_id}: resumed at step 3, to 4 steps", out.stderr
    stack.wait_status(job_id, "succeeded")
    after = job_rows(stack, job_id)
    assert [row[1] for row in after["steps"]] == [0, 1, 2, 3, 4]
    assert after["steps"][:3] == kept["steps"]
    assert [c for c in after["candidates"] if c[1] <= 2] == kept["candidates"]
    assert [t for t in after["top"] if t[0] <= 2] == kept["top"]
    # Step 3 was written from the stored top K of step 2: the fake writes only words its prompt shows.
    shown = {word for text in top_of_2 for word in normalize(text).split()} | EXTRA_WORDS
    step_3 = [text for _, step, text, _, _ in after["candidates"] if step == 3]
    assert step_3 and all(set(normalize(text).split()) <= shown for text in step_3), (step_3, shown)
    assert after["steps"][3][4] >= kept["steps"][2][4]  # best score never goes down
    events = query(stack.url, "SELECT kind, detail FROM job_events WHERE job_id = %s ORDER BY id", (job_id,))
    assert ("continued", "to 4 steps (was 2)") in events
    assert scalar(stack.url, "SELECT settings->>'steps' FROM jobs WHERE id = %s", (job_id,)) == "4"
