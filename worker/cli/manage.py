"""Managing jobs: status, cancel, resume, history, jobs."""

from __future__ import annotations

import json
import sys

import click

from worker.cli.common import cli, user_errors


def _print_summary(summary, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(summary.to_dict(), indent=2))
        return
    click.echo(f"job {summary.id} ({summary.task}): {summary.status}, "
               f"step {max(summary.steps_done - 1, 0)} of {summary.steps_total - 1}")
    if summary.best_text is not None:
        click.echo(f"best {summary.best_score:.4f}: {summary.best_text}")
    for what, sha256 in (("prompt", summary.prompt_sha256), ("pool", summary.pool_sha256)):
        if sha256:
            click.echo(f"{what}: the user's file, sha256 {sha256}")
    if summary.error:
        click.echo(f"error: {summary.error}")


@cli.command()
@click.argument("job_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@user_errors
def status(job_id: int, as_json: bool) -> None:
    """Status, progress and best result of a job."""
    from worker.store.jobs import get_job
    from worker.store.queries import job_cost, steps_of, summarize
    from worker.store.db import open_store

    with open_store()() as session:
        job = get_job(session, job_id)
        summary, cost = summarize(session, job), job_cost(job, steps_of(session, job_id))
    if as_json:
        click.echo(json.dumps(summary.to_dict() | {"cost": cost}, indent=2))
        return
    _print_summary(summary, False)
    if cost is None:
        click.echo("cost: not recorded")
        return
    tokens = [f"{n:,}" if n is not None else "not reported" for n in (cost["prompt_tokens"], cost["completion_tokens"])]
    click.echo(f"cost: {cost['llm_requests']} LLM requests, tokens {tokens[0]} in prompts + {tokens[1]} in answers, "
               f"LLM {cost['llm_seconds']:.1f} s, scoring {cost['scoring_seconds']:.1f} s, {cost['renders']} renders, "
               f"{cost['rejected_lines']} lines rejected; on {', '.join(cost['workers']) or '-'}")


@cli.command()
@click.argument("job_id", type=int)
@user_errors
def cancel(job_id: int) -> None:
    """Stop a job after the step in flight."""
    from worker.lifecycle import cancel as cancel_job
    from worker.store.db import open_store

    with open_store().begin() as session:
        summary = cancel_job(session, job_id)
    click.echo(f"job {job_id}: {'cancelled' if summary.status == 'cancelled' else 'stops after the step in flight'}")


@cli.command()
@click.argument("job_id", type=int)
@click.option("--steps", type=click.IntRange(1), metavar="N",
              help="Continue the job (a succeeded one too) to N steps, more than it has: its steps stay, the next "
                   "starts from the stored top K of its last. A patience that stopped it early is turned off.")
@user_errors
def resume(job_id: int, steps: int | None) -> None:
    """Continue a cancelled, failed or interrupted job after its last committed step."""
    from worker.lifecycle import resume_job
    from worker.store.db import open_store

    step = resume_job(open_store(), job_id, steps)
    click.echo(f"job {job_id}: resumed at step {step}" + (f", to {steps} steps" if steps else ""))


@cli.command()
@click.argument("job_id", type=int)
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True)
@user_errors
def history(job_id: int, fmt: str) -> None:
    """Every candidate of a job: step, rank, top-K flag, score, text."""
    from worker.store.jobs import get_job
    from worker.store.queries import history as job_history
    from worker.store.queries import history_csv, history_json
    from worker.store.db import open_store

    with open_store()() as session:
        get_job(session, job_id)  # an unknown job fails before anything is printed
        rows = job_history(session, job_id)
        sys.stdout.writelines(history_csv(rows) if fmt == "csv" else history_json(rows))


@cli.command()
@click.option("--status", "status_", help="Only jobs in this status.")
@click.option("--task", help="Only jobs of this task kind.")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@user_errors
def jobs(status_, task, limit, as_json) -> None:
    """List jobs, newest first."""
    from worker.store.queries import list_jobs
    from worker.store.db import open_store

    with open_store()() as session:
        found = list_jobs(session, status=status_, task=task, limit=limit).items
    if as_json:
        click.echo(json.dumps([s.to_dict() for s in found], indent=2))
        return
    for s in found:
        best = f"{s.best_score:.4f} {s.best_text}" if s.best_text else "-"
        click.echo(f"{s.id}\t{s.status}\t{s.task}\tstep {max(s.steps_done - 1, 0)}/{s.steps_total - 1}\t{best}")
