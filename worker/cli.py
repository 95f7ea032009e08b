"""The `mils` command line."""

from __future__ import annotations

import json
import logging
import os
import sys

import click

from worker.core import SettingsError
from worker.media import MediaError
from worker.samples import SAMPLES, sample_path

def _quiet_libraries() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the embedded models never need the hub
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log what the engine does.")
def cli(verbose: bool) -> None:
    """MILS: LLMs that see without training. Generate, score, keep the best; repeat."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


@cli.command()
@click.argument("image", required=False, type=click.Path(dir_okay=False))
@click.option("--sample", type=click.Choice(sorted(SAMPLES)), help="Caption a bundled sample photo instead.")
@click.option("--steps", type=int, help="Optimization steps after the bootstrap.")
@click.option("--candidates", type=int, help="New candidates per step (N).")
@click.option("--top-k", type=int, help="Best candidates kept and shown to the LLM (K).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--patience", type=int, help="Stop after this many steps without improvement.")
@click.option("--epsilon", type=float, help="Epsilon-greedy exploration of the top K (0 = greedy).")
@click.option("--llm", default="embedded", show_default=True, help="'embedded' or a Hugging Face model id / local path.")
@click.option("--scorer", default="embedded", show_default=True, help="'embedded' or 'open_clip:ARCH[@PRETRAINED]'.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def caption(image, sample, steps, candidates, top_k, seed, patience, epsilon, llm, scorer, as_json) -> None:
    """Caption IMAGE (a file) in this process; the job is kept in the local database."""
    from tqdm import tqdm

    from worker.jobs import JobError, create_job, run_in_process
    from worker.media import load_image_file
    from worker.models import ModelLoadError, check_specs
    from worker.store.db import SchemaError, open_store
    from worker.task_kinds import default_settings

    if (image is None) == (sample is None):
        raise click.UsageError("give an IMAGE file or --sample NAME (one of them)")
    try:
        media = load_image_file(image if image else sample_path(sample))
        overrides = {k: v for k, v in dict(steps=steps, candidates=candidates, top_k=top_k,
                                           patience=patience, epsilon=epsilon).items() if v is not None}
        settings = default_settings("image-caption", llm).replace(seed=seed, **overrides)
        if settings.prompts_per_step > settings.candidates:
            settings = settings.replace(prompts_per_step=settings.candidates)
        check_specs(llm, scorer)  # before the job is stored
        _quiet_libraries()
        Session = open_store()
        with Session.begin() as session:
            job_id = create_job(session, task="image-caption", settings=settings,
                                generator=llm, scorer=scorer, media=media).id
        steps_out = []
        bar = tqdm(total=settings.steps + 1, desc=f"job {job_id}", unit="step", file=sys.stderr,
                   disable=None)  # no bar when stderr is not a terminal
        with bar:
            for result in run_in_process(Session, job_id):
                steps_out.append({"step": result.step, "best_score": result.best.score,
                                  "best_text": result.best.text, "mean_topk": result.mean_topk})
                bar.update(1)
                bar.set_postfix(step=result.step, best=f"{result.best.score:.4f}")
        if not steps_out:
            raise click.ClickException(f"job {job_id} ran no step")
    except (MediaError, SettingsError, ModelLoadError, JobError, SchemaError) as exc:
        raise click.ClickException(str(exc)) from None
    best = steps_out[-1]
    if as_json:
        click.echo(json.dumps({"caption": best["best_text"], "score": best["best_score"],
                               "steps": steps_out, "job_id": job_id}, indent=2))
    else:
        click.echo(best["best_text"])


@cli.group()
def db() -> None:
    """Database schema (Alembic migrations)."""


@db.command()
def upgrade() -> None:
    """Create or upgrade the schema of MILS_DATABASE_URL (or the local SQLite file)."""
    from worker.config import database_url
    from worker.store.db import upgrade as run_upgrade

    run_upgrade()
    click.echo(f"schema up to date: {database_url().split('@')[-1]}")


def main() -> None:
    cli(prog_name="mils")
