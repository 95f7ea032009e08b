"""`mils batch ...`: MILS over a dataset (worker.batches): submit, list, status, cancel, resume,
results, eval."""

from __future__ import annotations

import json
import sys
import time

import click

from worker.cli.common import apply, cli, user_errors
from worker.cli.options import kind_options, read_user_files, settings_options, split_given, user_file_options
from worker.kinds import TASK_KINDS


@cli.group()
def batch() -> None:
    """Run MILS over a dataset: a folder, a COCO captions file, a CSV/JSONL manifest or an archive."""


def _duration(seconds: float | None) -> str:
    from worker.store.batches import format_duration

    return format_duration(seconds)


def describe(p) -> str:
    """Two lines: jobs by status, then steps, speed and the time left."""
    statuses = ", ".join(f"{status} {n}" for status, n in sorted(p.by_status.items()))
    rejected = f", {p.rejected} rejected (unreadable)" if p.rejected else ""
    rate = f"{p.steps_per_second:.2f} steps/s" if p.steps_per_second else "no step in the last 5 min"
    if p.finished:
        return (f"batch {p.name} ({p.task}, {p.items} items): finished, {p.jobs} jobs ({statuses or 'none'})"
                f"{rejected}\nsteps {p.steps_done}")
    return (f"batch {p.name} ({p.task}, {p.items} items): {p.done}/{p.jobs} jobs done ({statuses or 'none'}){rejected}\n"
            f"steps {p.steps_done}/{p.steps_total} · {rate} · ETA {_duration(p.eta_seconds)}")


def _submit(name, dataset_path, like, task, images, llm, scorer, priority, max_in_flight, as_json, split, subset,
            subset_seed, path_column, key_column, reference_columns, **params) -> None:
    """Submit the items of DATASET to batch NAME (made if new) and queue them for the workers.

    DATASET is a folder (every file of the task's formats, recursively), an annotation file (COCO
    captions, Karpathy's dataset_coco/flickr30k/flickr8k.json, MSR-VTT's *_videodatainfo.json,
    Clotho's captions CSV; media under --media, default the file's folder), a .csv or .jsonl
    manifest (a `path` column, optional `id` and `reference...` columns, or the columns named by
    --path-column, --key-column, --reference-columns) or a .zip/.tar archive. --split and --subset
    choose the items before any file is read. Submitting again adds only the items the batch lacks.

    \b
    mils batch submit coco-test dataset_coco.json --media coco/ --split test
    mils batch submit coco-1k dataset_coco.json --media coco/ --split test --subset 1000
    mils batch submit msrvtt test_videodatainfo.json --media TestVideo/ --task video-caption
    mils batch submit clotho clotho_captions_evaluation.csv --media evaluation/ --task audio-caption

    With --like OLD instead of DATASET, NEW is a variant of batch OLD: its items (the same keys,
    references and stored inputs), task, models, settings, options and prompt and pool files, but for
    the options given; what differs from OLD is printed.

    \b
    mils batch submit coco-test-k10 --like coco-test --top-k 10"""
    from tqdm import tqdm

    from worker.batches import submit_batch
    from worker.datasets import SUBSET_SEED, Columns, Selection, open_dataset
    from worker.models.registry import resolve
    from worker.store.batches import get_batch
    from worker.store.db import open_store
    from worker.store.jobs import JobError

    # A registry name (MILS_MODELS) or any raw spec: the operator's command line.
    (llm_name, llm), (scorer_name, scorer) = [resolve(role, given, raw_allowed=True) if given else (None, None)
                                              for role, given in (("generator", llm), ("scorer", scorer))]
    names = {"generator": llm_name, "scorer": scorer_name}
    sessions = open_store()
    if like is not None:
        chosen = {"DATASET": dataset_path, "--media": images, "--split": split, "--subset": subset,
                  "--subset-seed": subset_seed, "--path-column": path_column, "--key-column": key_column,
                  "--reference-columns": reference_columns}
        given = [what for what, value in chosen.items() if value is not None]
        if given:
            raise click.UsageError(f"--like takes the items of batch {like!r}: give no {', '.join(given)}")
        return _variant(sessions, name, like, task, llm, scorer, priority, max_in_flight, as_json, params)
    if dataset_path is None:
        raise click.UsageError("give a DATASET, or --like OLD for a variant of batch OLD")
    if task is None:
        with sessions() as session:
            try:
                task = get_batch(session, name).task
            except JobError:
                pass
    kind = TASK_KINDS[task or "image-caption"]
    options, _ = split_given(kind, params, lambda k: f"--task {k.name}")
    files = read_user_files(kind.name, params)
    dataset = open_dataset(dataset_path, kind.input_kind, media_root=images,
                           selection=Selection(split, subset, SUBSET_SEED if subset_seed is None else subset_seed),
                           columns=Columns.parse(path_column, key_column, reference_columns))
    with tqdm(total=len(dataset.items), desc=f"batch {name}", unit="item", file=sys.stderr, disable=None) as bar:
        report = submit_batch(sessions, name, dataset, task=task, generator=llm, scorer=scorer, overrides=params,
                              options=options, priority=priority, max_in_flight=max_in_flight, files=files,
                              on_item=lambda: bar.update(1), names=names)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
        return
    for bad in report.rejected:
        where = f" (line {bad['line']})" if bad["line"] is not None else ""
        click.echo(f"rejected {bad['key']}{where}: {bad['error']}", err=True)
    made = "made" if report.created else "already there"
    chosen = describe_choice(report.dataset)
    click.echo(f"batch {name} ({made}): {report.added} item(s) queued, {report.already} already in it, "
               f"{len(report.rejected)} rejected" + (f", {report.requeued} queued again" if report.requeued else "")
               + (f"; {chosen}" if chosen else ""))


def _variant(sessions, name, like, task, llm, scorer, priority, max_in_flight, as_json, params) -> None:
    """`mils batch submit NEW --like OLD ...` (worker.batches.variant_of)."""
    from worker.batches import variant_of
    from worker.store.batches import get_batch

    with sessions() as session:
        kind = TASK_KINDS[task or get_batch(session, like).task]
    options, _ = split_given(kind, params, lambda k: f"--task {k.name}")
    files = read_user_files(kind.name, params)
    report = variant_of(sessions, like, name, task=task, generator=llm, scorer=scorer, overrides=params,
                        options=options, priority=priority, max_in_flight=max_in_flight, files=files)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
        return
    for field, (before, after) in report.changes.items():
        click.echo(f"{field}: {before!r} -> {after!r}")
    if report.note:
        click.echo(f"note: {report.note}", err=True)
    click.echo(f"batch {name} (like {like}): {report.items} item(s), {report.queued} queued now"
               + (f", {report.rejected} rejected as in {like}" if report.rejected else ""))


def describe_cost(cost: dict | None) -> str:
    """A batch's cost so far (worker.store.batches.batch_cost), in words."""
    if cost is None:
        return "cost: not recorded yet"
    each = cost["per_item"]

    def tokens(value) -> str:
        return "not reported" if value is None else f"{value:,.0f}"

    return (f"cost per item ({cost['items']} items): {each['llm_requests']:g} LLM requests, tokens "
            f"{tokens(each['prompt_tokens'])} + {tokens(each['completion_tokens'])} (prompts + answers), LLM "
            f"{each['llm_seconds']:.1f} s, scoring {each['scoring_seconds']:.1f} s; {cost['workers']} worker(s)")


def describe_choice(dataset: dict) -> str:
    """How a submission chose its items, in words ("" when it took every entry)."""
    parts = []
    if "split" in dataset:
        parts.append(f"split {dataset['split']}")
    if "subset" in dataset:
        parts.append(f"a subset of {dataset['subset']} (subset seed {dataset['subset_seed']})")
    of = f" of {dataset['entries']} entries" if parts and "entries" in dataset else ""
    return ", ".join(parts) + of


_COLUMNS_HELP = " of a CSV or JSON Lines manifest (Clotho's captions CSVs are recognised without it)."

batch.command("submit")(apply(user_errors(_submit), [
    click.argument("name"),
    click.argument("dataset_path", metavar="[DATASET]", type=click.Path(), required=False),
    click.option("--like", metavar="OLD", help="Make NEW a variant of batch OLD: its items, task, models, settings, "
                                               "options, prompt and pool, but for the options given (no DATASET)."),
    click.option("--task", type=click.Choice(["image-caption", "video-caption", "audio-caption"]),
                 help="The task of every item (a new batch: default image-caption)."),
    click.option("--media", "--images", "images", type=click.Path(file_okay=False), metavar="DIR",
                 help="The folder the manifest's paths are relative to (default: the manifest's folder): for "
                      "Karpathy's COCO file the one holding val2014/ and train2014/, for MSR-VTT the videos' "
                      "folder, for Clotho the recordings' folder."),
    click.option("--split", metavar="NAME",
                 help="Only the entries of this split (Karpathy: train, val, test, restval; MSR-VTT: train, "
                      "validate, test); chosen before any media file is read."),
    click.option("--subset", type=click.IntRange(1), metavar="N",
                 help="A seeded random sample of N of the (split's) entries; the same seed gives the same sample."),
    click.option("--subset-seed", type=int, metavar="SEED",
                 help="The subset's own seed (default 0; not the jobs' --seed), recorded with the batch."),
    click.option("--path-column", metavar="NAME", help="The column holding each item's media path" + _COLUMNS_HELP),
    click.option("--key-column", metavar="NAME", help="The column holding each item's id (default: id, else the path)"
                                                      + _COLUMNS_HELP),
    click.option("--reference-columns", metavar="NAMES",
                 help="The columns holding reference captions, comma-separated, shell patterns allowed "
                      "(e.g. caption_*)," + _COLUMNS_HELP),
    click.option("--llm", help="The LLM of every job (a new batch: default 'embedded'; see `mils caption --help`)."),
    click.option("--scorer", help="The scorer of every job (a new batch: default 'embedded')."),
    click.option("--priority", type=click.Choice(["low", "normal", "high"]),
                 help="Its jobs' place in the queue (a new batch: low, so single jobs go first)."),
    click.option("--max-in-flight", type=click.IntRange(1), metavar="N",
                 help="Its jobs on the queue or running at once at most (a new batch: MILS_BATCH_IN_FLIGHT, "
                      "64); the rest start as these finish."),
    *settings_options(batch=True),
    *user_file_options(TASK_KINDS["image-caption"], batch=True),
    *kind_options(None),
    click.option("--json", "as_json", is_flag=True, help="Print the submission's report as JSON."),
]))


@batch.command("list")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@user_errors
def list_(limit: int, as_json: bool) -> None:
    """Batches, newest first, with their progress."""
    from worker.store.batches import list_batches
    from worker.store.db import open_store

    with open_store()() as session:
        found = list_batches(session, limit=limit).items
    if as_json:
        click.echo(json.dumps([p.to_dict() for p in found], indent=2))
        return
    for p in found:
        click.echo(f"{p.name}\t{p.task}\t{p.done}/{p.jobs} done\t{p.rejected} rejected\t"
                   f"steps {p.steps_done}/{p.steps_total}\tETA {_duration(p.eta_seconds)}")


@batch.command()
@click.argument("name")
@click.option("--once", is_flag=True, help="Print the progress once instead of following it.")
@click.option("--every", type=click.FloatRange(0.2), default=2.0, show_default=True, help="Seconds between updates.")
@click.option("--json", "as_json", is_flag=True, help="Print the progress once, as JSON.")
@user_errors
def status(name: str, once: bool, every: float, as_json: bool) -> None:
    """A batch's progress: a bar of its steps, jobs done, steps per second and the time left,
    updating until every job is done (or Ctrl-C)."""
    from tqdm import tqdm

    from worker.store.batches import batch_cost, get_batch, progress
    from worker.store.db import open_store

    sessions = open_store()

    def read():
        with sessions() as session:
            return progress(session, get_batch(session, name))

    current = read()
    if as_json or once or not sys.stderr.isatty():
        with sessions() as session:
            cost = batch_cost(session, get_batch(session, name).id)
        click.echo(json.dumps(current.to_dict() | {"cost": cost}, indent=2) if as_json
                   else describe(current) + "\n" + describe_cost(cost))
        return
    with tqdm(total=current.steps_total, desc=name, unit="step", file=sys.stderr,
              bar_format="{desc}: {percentage:3.0f}%|{bar}| {n}/{total} steps {postfix}") as bar:
        try:
            while True:
                bar.total, bar.n = current.steps_total, current.steps_done
                rate = f"{current.steps_per_second:.2f} steps/s" if current.steps_per_second else "- steps/s"
                bar.set_postfix_str(f"jobs {current.done}/{current.jobs} · {rate} · ETA {_duration(current.eta_seconds)}")
                if current.finished:
                    break
                time.sleep(every)
                current = read()
        except KeyboardInterrupt:
            pass
    click.echo(describe(current))


@batch.command()
@click.argument("name")
@user_errors
def cancel(name: str) -> None:
    """Stop every unfinished job of the batch after its step in flight."""
    from worker.batches import cancel_batch
    from worker.store.db import open_store

    click.echo(f"batch {name}: {cancel_batch(open_store(), name)} job(s) cancelled or stopping")


@batch.command()
@click.argument("name")
@click.option("--steps", type=click.IntRange(1), metavar="N",
              help="Continue the batch to N steps, more than it has: its succeeded jobs go on from their last step "
                   "too (see `mils resume --steps`).")
@user_errors
def resume(name: str, steps: int | None) -> None:
    """Queue again the batch's cancelled, failed and interrupted jobs (and any not yet queued)."""
    from worker.batches import resume_batch
    from worker.store.db import open_store

    resumed = resume_batch(open_store(), name, steps=steps)
    click.echo(f"batch {name}: {resumed} job(s) queued again" + (f", to {steps} steps" if steps else ""))


@batch.command()
@click.argument("name")
@click.option("--format", "fmt", type=click.Choice(["coco", "csv", "jsonl"]), default="coco", show_default=True,
              help="coco: [{\"image_id\", \"caption\"}] of the succeeded items (the COCO results format); csv, "
                   "jsonl: every item with its status, output, score and error.")
@click.option("-o", "--output", type=click.File("w", encoding="utf-8"), default="-", help="A file (default stdout).")
@user_errors
def results(name: str, fmt: str, output) -> None:
    """The batch's final captions, for evaluation tools."""
    from worker.batches import export_results
    from worker.store.db import open_store

    with open_store()() as session:
        output.writelines(export_results(session, name, fmt))


@batch.command("eval")
@click.argument("name")
@click.option("--references", type=click.Path(exists=True),
              help="Reference captions: a COCO captions, Karpathy split, MSR-VTT or Clotho file, or a CSV/JSONL "
                   "manifest with reference columns (default: those submitted with the items). Items match by key, "
                   "else (a folder's items, keyed by path) by path or file name.")
@click.option("--path-column", metavar="NAME", help="The path column" + _COLUMNS_HELP)
@click.option("--key-column", metavar="NAME", help="The id column" + _COLUMNS_HELP)
@click.option("--reference-columns", metavar="NAMES",
              help="The reference columns, comma-separated," + _COLUMNS_HELP)
@click.option("--json", "as_json", is_flag=True)
@user_errors
def eval_(name: str, references: str | None, path_column, key_column, reference_columns, as_json: bool) -> None:
    """COCO caption metrics (pycocoevalcap: BLEU-1..4, METEOR, ROUGE-L, CIDEr; SPICE when its
    jars are present) of the final captions and of the best caption after each step; stored."""
    from worker.batches import evaluate_batch
    from worker.datasets import Columns, open_references
    from worker.store.db import open_store

    sessions = open_store()
    refs = None
    if references:
        refs = open_references(references, columns=Columns.parse(path_column, key_column, reference_columns))
    metrics = evaluate_batch(sessions, name, refs)
    if as_json:
        click.echo(json.dumps(metrics, indent=2))
        return
    names = metrics["metrics"]
    click.echo(f"batch {name}: {metrics['final']['items']} item(s) against {metrics['references']} references "
               "(values x100)")
    if metrics.get("matched_by"):
        click.echo("matched by " + ", ".join(f"{way} {n}" for way, n in metrics["matched_by"].items()))
    # Each step's metrics beside what an item had cost by then: where more steps stop paying.
    spent = ["tokens/item", "LLM s/item", "scoring s/item"]
    click.echo("\t".join(["", *names, *spent]))
    for row in [*metrics["per_step"], {"step": "final", **metrics["final"]}]:
        label = row["step"] if row["step"] == "final" else f"step {row['step']}"
        cost = row.get("cost_per_item") or {}
        costs = [cost.get(k) for k in ("tokens", "llm_seconds", "scoring_seconds")]
        click.echo("\t".join([label, *(f"{100 * row[m]:.1f}" if m in row else "-" for m in names),
                              *(f"{c:g}" if c is not None else "-" for c in costs)]))
    if metrics["spice"]:
        click.echo(metrics["spice"])


@batch.command("compare")
@click.argument("names", nargs=-1, required=True, metavar="BASELINE OTHER...")
@click.option("--references", type=click.Path(exists=True),
              help="Reference captions for every batch (default: the baseline's own); as for `mils batch eval`.")
@click.option("--confidence", type=float, default=0.95, show_default=True, help="Of the bootstrap intervals.")
@click.option("--resamples", type=click.IntRange(100, 1_000_000), default=9999, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="The bootstrap's seed.")
@click.option("--json", "as_json", is_flag=True)
@user_errors
def compare(names: tuple[str, ...], references: str | None, confidence: float, resamples: int, seed: int,
            as_json: bool) -> None:
    """Batches side by side: what differs (settings, models, prompt and pool), the caption metrics
    per step against the same references, the cost per item, and for the items they share, each
    batch's paired difference from the first in CIDEr and METEOR with a bootstrap confidence
    interval (scipy.stats.bootstrap, BCa): an interval without 0 is a difference beyond noise."""
    from worker.comparison import compare_batches
    from worker.datasets import open_references
    from worker.store.db import open_store

    refs = open_references(references) if references else None
    found = compare_batches(open_store(), names, refs, confidence=confidence, resamples=resamples, seed=seed)
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    click.echo(f"against {found['references']} references; differences: {', '.join(found['differences']) or 'none'}")
    for b in found["batches"]:
        click.echo(f"  {b['name']}: " + ", ".join(f"{field}={_field(b, field)}" for field in found["differences"]))
    for b in found["batches"]:
        click.echo(f"{b['name']}: {describe_cost(b['cost'])}")
    metrics = list(next(iter(found["metrics"].values()))["final"].keys() - {"items"})
    shown = [m for m in ("Bleu_4", "METEOR", "ROUGE_L", "CIDEr", "SPICE") if m in metrics]
    click.echo("\t".join(["step", *(f"{b['name']} {m}" for b in found["batches"] for m in shown)]))
    rows = max(len(v["per_step"]) for v in found["metrics"].values())
    for i in range(rows):
        cells = []
        for b in found["batches"]:
            steps = found["metrics"][b["name"]]["per_step"]
            cells += [f"{100 * steps[i][m]:.1f}" if i < len(steps) else "-" for m in shown]
        click.echo("\t".join([str(i), *cells]))
    level = f"{100 * found['confidence']:g}%"
    for pair in found["paired"]:
        for metric, d in pair["metrics"].items():
            verdict = "beyond noise" if d["beyond_noise"] else "within noise"
            click.echo(f"{pair['batch']} - {pair['baseline']} over {pair['items']} shared items: {metric} "
                       f"{100 * d['difference']:+.1f} (x100), {level} CI [{100 * d['low']:+.1f}, {100 * d['high']:+.1f}]: "
                       f"{verdict}")


def _field(batch: dict, field: str):
    from worker.batches import field_value

    value = field_value(batch, field)
    return value[:12] if isinstance(value, str) and field.endswith("sha256") else value
