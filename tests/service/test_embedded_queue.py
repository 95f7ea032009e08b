"""The embedded default of the job service: no PostgreSQL, no Redis. `mils submit` and a real
`mils worker` meet through SQLite (the database) and a SQLite-backed queue in MILS_HOME."""

from __future__ import annotations

import json

from tests.support.services import Worker, mils_env, run_mils, wait_for


def test_submit_and_worker_on_sqlite_only(tmp_path):
    env = mils_env(home=tmp_path / "home", database_url="", broker_url="", MILS_FAKE_STEP_SECONDS="0")
    env = {k: v for k, v in env.items() if k not in ("MILS_DATABASE_URL", "MILS_BROKER_URL")}
    out = run_mils("submit", "--sample", "chelsea", "--llm", "py:tests.support.fakes:worker_generator",
                   "--scorer", "py:tests.support.fakes:worker_scorer", "--steps", "3", "--top-k", "4",
                   "--candidates", "5", env=env)
    assert out.returncode == 0, out.stderr
    job_id = int(out.stdout)
    assert (tmp_path / "home" / "mils.db").exists() and (tmp_path / "home" / "queue.db").exists()

    worker = Worker("embedded", env, tmp_path)
    try:
        def finished() -> bool:
            status = json.loads(run_mils("status", str(job_id), "--json", env=env).stdout)
            return status["status"] == "succeeded" and status
        wait_for("the job to succeed", finished, timeout=90, interval=1, on_timeout=worker.text)
    finally:
        worker.close()
    status = json.loads(run_mils("status", str(job_id), "--json", env=env).stdout)
    assert status["steps_done"] == 4 and status["best_text"]
    history = run_mils("history", str(job_id), "--format", "csv", env=env).stdout.splitlines()
    assert history[0] == "job_id,step,rank,in_top_k,score,text,details,artifact_sha256"
    assert {line.split(",")[1] for line in history[1:]} == {"0", "1", "2", "3"}
