"""Click options made from the declarations of the settings (worker.core.settings) and of the
kinds' options (worker.kinds.base.Option), so either appears here without another edit.

A command shows the options of its own kind; it also takes every other kind's (hidden), only to
say whose they are (`--frames is for --task video-caption`) instead of "no such option".
"""

from __future__ import annotations

from typing import Any

import click

from worker.core.settings import shown_on
from worker.kinds import TASK_KINDS, Option, TaskKind, all_options
from worker.kinds.user_files import (MAX_POOL_BYTES, MAX_PROMPT_BYTES, POOL_FILE_HELP, PROMPT_FILE_HELP,
                                      USER_FILE_TASKS)
from worker.media.samples import SAMPLES

_CLICK_TYPES = {int: click.INT, float: click.FLOAT, str: click.STRING}


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def option_help(option: Option) -> str:
    what = option.help[:1].upper() + option.help[1:]
    return f"{what} ({'required' if option.required else f'default {option.default}'})."


def settings_options(*, batch: bool = False) -> list:
    """The optimization settings of a new job, one option per setting declared for the CLI
    (worker.core.settings), unset by default: the task's default applies. A setting every task
    defaults alike (the seed) shows its default; `batch`: not even that (a batch's resubmission
    keeps the batch's own), and each setting's batch wording is used."""
    decorators = []
    for setting in shown_on("cli"):
        fixed = setting.show_default and not batch
        help_text = setting.wording("batch_cli" if batch else "cli") or None
        shown_default = {"default": setting.default, "show_default": True} if fixed else {}
        decorators.append(click.option(flag(setting.name), type=_CLICK_TYPES[setting.type], help=help_text,
                                       **shown_default))
    return decorators


def kind_options(shown: TaskKind | None) -> list:
    """One click option per option name of every kind: shown for `shown` (None: for all kinds),
    hidden for the others; help texts from the shown kind's own declaration."""
    decorators = []
    for name, (first, kinds) in all_options().items():
        visible = shown is None or name in shown.options
        option = shown.options[name] if shown is not None and name in shown.options else first
        kind_note = "" if shown is not None else f" [{', '.join(kinds)}]"
        kind_type = click.Choice(option.choices) if option.choices else _CLICK_TYPES[option.type]
        decorators.append(click.option(flag(name), name, type=kind_type, hidden=not visible,
                                       help=option_help(option) + kind_note))
    return decorators


def attachment_options(shown: TaskKind | None) -> list:
    """`--NAME FILE` and `--NAME-sample SAMPLE` for every kind's attachments (e.g. --style)."""
    decorators = []
    for kind in TASK_KINDS.values():
        for name, what in kind.attachments.items():
            visible = shown is None or kind is shown
            decorators += [
                click.option(flag(name), f"{name}_file", type=click.Path(dir_okay=False), hidden=not visible,
                             help=f"{what[:1].upper() + what[1:]} (required) [{kind.name}]."),
                click.option(flag(name) + "-sample", f"{name}_sample", type=click.Choice(sorted(SAMPLES)),
                             hidden=not visible, help=f"A bundled photo as {what} [{kind.name}]."),
            ]
    return decorators


def split_given(kind: TaskKind, params: dict[str, Any], where) -> tuple[dict, dict]:
    """Take the kind options and attachments out of a command's parameters: (options, attachment
    sources {name: (file, sample)}). Another kind's option given is a usage error saying whose it
    is: `where(kind)` words it (e.g. "--task video-caption" or "`mils caption-video`")."""
    options = {}
    for name, (_, kinds) in all_options().items():
        value = params.pop(name, None)
        if name in kind.options:
            options[name] = value
        elif value is not None:
            raise click.UsageError(f"{flag(name)} is for {where(TASK_KINDS[kinds[0]])}")
    sources = {}
    for other in TASK_KINDS.values():
        for name in other.attachments:
            given = params.pop(f"{name}_file", None), params.pop(f"{name}_sample", None)
            if other is kind:
                sources[name] = given
            elif any(given):
                raise click.UsageError(f"{flag(name)} and {flag(name)}-sample are for {where(other)}")
    return options, sources


def user_file_options(shown: TaskKind | None, *, batch: bool = False) -> list:
    """`--prompt-file FILE` and `--pool-file FILE`: the user's prompt template and initial pool
    (worker.kinds.user_files), of every job of a batch when `batch`; hidden for a kind that takes
    none (giving them says whose they are)."""
    visible = shown is None or shown.name in USER_FILE_TASKS
    every = " Of every job of the batch (a new batch; an existing one keeps its own)." if batch else ""
    return [
        click.option("--prompt-file", type=click.Path(exists=True, dir_okay=False), hidden=not visible,
                     help=PROMPT_FILE_HELP + every),
        click.option("--pool-file", type=click.Path(exists=True, dir_okay=False), hidden=not visible,
                     help=POOL_FILE_HELP + every),
    ]


def read_user_files(task: str, params: dict[str, Any]):
    """Take --prompt-file and --pool-file out of a command's parameters, read (no more than their
    limits, so a huge file is refused without reading it whole) and checked for `task`:
    a worker.submission.UserFiles."""
    from worker.submission import user_files

    given = {}
    for name, limit in (("prompt", MAX_PROMPT_BYTES), ("pool", MAX_POOL_BYTES)):
        path = params.pop(f"{name}_file", None)
        if path is not None:
            with open(path, "rb") as file:
                given[name] = (file.read(limit + 1), click.format_filename(path))
    return user_files(task, **given)
