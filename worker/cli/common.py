"""What every `mils` command shares: the group, one-line errors, quiet model libraries."""

from __future__ import annotations

import functools
import logging
import os

import click

from worker.core import SettingsError
from worker.media import MediaError


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log what the engine does.")
def cli(verbose: bool) -> None:
    """MILS: LLMs that see without training. Generate, score, keep the best; repeat."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")


def user_errors(fn):
    """Expected failures become one-line errors with a non-zero exit, never a traceback."""
    from worker.datasets import ManifestError
    from worker.evaluation import EvaluationError
    from worker.models import ModelLoadError
    from worker.models.registry import RegistryError
    from worker.queue import BrokerError
    from worker.store.db import SchemaError
    from worker.store.jobs import JobError
    from worker.store.queries import QueryError

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (MediaError, SettingsError, ModelLoadError, JobError, QueryError, SchemaError,
                BrokerError, ManifestError, EvaluationError, RegistryError) as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper


def quiet_libraries() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the embedded models never need the hub
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    # One INFO line per LLM request would drown a worker's log; the openai client's retries still show.
    for name in ("httpx", "httpx2"):
        logging.getLogger(name).setLevel(logging.WARNING)


def apply(fn, decorators):
    """`fn` with click decorators applied so that they appear in `--help` in list order."""
    for decorator in reversed(decorators):
        fn = decorator(fn)
    return fn
