"""The `mils` command line.

    common     the group, one-line errors
    options    click options made from the kinds' declarations (worker.kinds)
    run        running and submitting jobs: caption, caption-video, caption-audio, t2i, style, arithmetic, submit
    manage     status, cancel, resume, history, jobs
    batch      mils batch submit|list|status|cancel|resume|results|eval: MILS over a dataset
    admin      worker, reap, web, models, token, db
"""

from __future__ import annotations

from worker.cli import admin, batch, manage, run  # noqa: F401  (each registers its commands)
from worker.cli.common import cli


def main() -> None:
    cli(prog_name="mils")
