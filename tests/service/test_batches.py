"""Batches for real: `mils batch ...` commands, `mils worker` processes, the machine's PostgreSQL
and a private Redis. A batch of 30 items runs on the named fakes of tests/support/fakes.py
while a worker is SIGKILLed mid-batch; one of two items runs on the real embedded models.

What is checked: every item's job succeeds with each step committed exactly once (by the
database; the workers' logs name no step that it lacks, and none twice), resubmitting the
manifest adds nothing, the COCO results file loads in pycocotools' own loader, and `mils batch
eval` equals pycocoevalcap's own COCOEvalCap on the same files.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import SLOW_HOME
from tests.service.test_distributed import redis, redis_server, stack  # noqa: F401 (fixtures)
from tests.support.services import (
    assert_committed_once,
    assert_logged_commits_true,
    assert_one_error_line,
    query,
    scalar,
    wait_for,
    without_spice,
)

GENERATOR = "py:tests.support.fakes:worker_generator"
SCORER = "py:tests.support.fakes:worker_scorer"
STEPS = 3
WORDS = ["cat", "dog", "table", "sun", "tabby", "wooden", "kitten", "chair", "red", "blue"]


def write_dataset(folder: Path, n: int = 30) -> Path:
    """n small real PNGs and a CSV manifest with ids and two references each, plus one row whose
    file is missing and one whose file is not an image (reported, not run)."""
    images = folder / "images"
    images.mkdir()
    rows = ["id,path,reference,reference_2"]
    for i in range(1, n + 1):
        buffer = io.BytesIO()
        Image.new("RGB", (24, 16), (i * 8 % 256, 255 - i * 5 % 256, i * 13 % 256)).save(buffer, "PNG")
        (images / f"img{i:03d}.png").write_bytes(buffer.getvalue())
        a, b = WORDS[i % len(WORDS)], WORDS[(i * 3) % len(WORDS)]
        rows.append(f"{i},images/img{i:03d}.png,a {a} sitting on a {b},a {b} and a {a} in the sun")
    (images / "broken.png").write_bytes(b"this is not a png")
    rows += [f"{n + 1},images/missing.png,,", f"{n + 2},images/broken.png,,"]
    manifest = folder / "manifest.csv"
    manifest.write_text("\n".join(rows) + "\n")
    return manifest


def batch_status(stack, name: str) -> dict:
    out = stack.cli("batch", "status", name, "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def wait_finished(stack, name: str, timeout: float) -> dict:
    wait_for(f"batch {name} to finish", lambda: batch_status(stack, name)["finished"], timeout, interval=1,
             on_timeout=stack.logs)
    return batch_status(stack, name)


def coco_annotations(manifest: Path, path: Path) -> Path:
    """The manifest's references as a COCO captions annotation file (what a dataset ships)."""
    import csv

    images, annotations = [], []
    for row in csv.DictReader(manifest.open()):
        refs = [row[k] for k in ("reference", "reference_2") if row[k]]
        if refs:
            images.append({"id": int(row["id"]), "file_name": row["path"]})
            annotations += [{"id": len(annotations) + 1, "image_id": int(row["id"]), "caption": r} for r in refs]
    path.write_text(json.dumps({"images": images, "annotations": annotations}))
    return path


def test_a_batch_of_30_survives_a_killed_worker_and_evaluates_like_pycocoevalcap(stack, tmp_path, monkeypatch):
    manifest = write_dataset(tmp_path)
    out = stack.cli("batch", "submit", "b30", str(manifest), "--llm", GENERATOR, "--scorer", SCORER,
                    "--steps", str(STEPS), "--candidates", "4", "--top-k", "3", "--seed", "5")
    assert out.returncode == 0, out.stderr
    assert "30 item(s) queued, 0 already in it, 2 rejected" in out.stdout
    assert "rejected 31 (line 32): images/missing.png: no such file" in out.stderr
    assert "rejected 32 (line 33): broken.png: not an image" in out.stderr

    fast = {"MILS_FAKE_STEP_SECONDS": "0.15"}
    doomed = stack.start_worker("doomed", **fast)
    stack.start_worker("steady", **fast)
    wait_for("40 steps of the batch", lambda: scalar(stack.url, "SELECT count(*) FROM steps") >= 40, 120,
             interval=0.1, on_timeout=stack.logs)
    doomed.sigkill()  # mid-batch: with 30 jobs queued, it was almost surely mid-step
    stack.start_worker("replacement", **fast)
    done = wait_finished(stack, "b30", timeout=240)
    assert done["by_status"] == {"succeeded": 30} and done["rejected"] == 2 and done["items"] == 32
    assert done["steps_done"] == done["steps_total"] == 30 * (STEPS + 1)

    # Nothing lost, nothing twice: every (job, step) committed once, by the database (the killed
    # worker may have committed a step without logging it); every step a worker logged as
    # committed is one of them, and none was logged twice.
    jobs = [j for (j,) in query(stack.url, "SELECT job_id FROM batch_items WHERE job_id IS NOT NULL")]
    assert len(jobs) == 30
    steps = query(stack.url, "SELECT job_id, step FROM steps")
    assert sorted(steps) == sorted((j, s) for j in jobs for s in range(STEPS + 1))
    assert_committed_once(stack.url, jobs, [(j, s) for j in jobs for s in range(STEPS + 1)])
    assert_logged_commits_true(stack.url, stack.workers, jobs)
    assert scalar(stack.url, "SELECT count(*) FROM (SELECT job_id, text_key FROM candidates "
                             "GROUP BY job_id, text_key HAVING count(*) > 1) d") == 0

    # Submitting the same manifest again adds nothing (the two bad items are tried again).
    again = stack.cli("batch", "submit", "b30", str(manifest))
    assert again.returncode == 0 and "0 item(s) queued, 30 already in it, 2 rejected" in again.stdout
    assert scalar(stack.url, "SELECT count(*) FROM jobs") == 30
    different = stack.cli("batch", "submit", "b30", str(manifest), "--steps", "4")
    assert_one_error_line(different, r"batch 'b30' runs with steps=3, not 4")

    # The COCO results file loads in pycocotools' loader against the dataset's annotations.
    from pycocotools.coco import COCO

    results = tmp_path / "results.json"
    assert stack.cli("batch", "results", "b30", "--format", "coco", "-o", str(results)).returncode == 0
    coco = COCO(str(coco_annotations(manifest, tmp_path / "captions.json")))
    loaded = coco.loadRes(str(results))
    assert sorted(loaded.getImgIds()) == list(range(1, 31))
    finals = dict(query(stack.url, "SELECT i.item_key, j.result_text FROM batch_items i JOIN jobs j ON j.id = i.job_id"))
    assert {a["image_id"]: a["caption"] for a in loaded.dataset["annotations"]} == \
        {int(k): v for k, v in finals.items()}

    # `mils batch eval` (the references submitted with the items) equals COCOEvalCap's evaluate().
    out = stack.cli("batch", "eval", "b30", "--json")
    assert out.returncode == 0, out.stderr
    ours = json.loads(out.stdout)
    import pycocoevalcap.eval as cocoeval

    without_spice(monkeypatch)
    direct = cocoeval.COCOEvalCap(coco, loaded)
    direct.evaluate()
    for metric in ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr"):
        assert ours["final"][metric] == pytest.approx(direct.eval[metric], abs=1e-9), metric
    assert ours["final"]["items"] == 30 and "SPICE skipped" in ours["spice"]
    assert [row["step"] for row in ours["per_step"]] == list(range(STEPS + 1))
    assert {m: ours["per_step"][-1][m] for m in ours["metrics"]} == {m: ours["final"][m] for m in ours["metrics"]}
    stored = query(stack.url, "SELECT items, metrics FROM batch_evaluations")
    assert len(stored) == 1 and stored[0][0] == 30 and stored[0][1]["final"] == ours["final"]


def test_cancel_and_resume_a_batch(stack, tmp_path):
    manifest = write_dataset(tmp_path, n=6)
    assert stack.cli("batch", "submit", "b6", str(manifest), "--llm", GENERATOR, "--scorer", SCORER,
                     "--steps", "2").returncode == 0
    out = stack.cli("batch", "cancel", "b6")
    assert out.returncode == 0 and "6 job(s) cancelled or stopping" in out.stdout
    assert batch_status(stack, "b6")["by_status"] == {"cancelled": 6}
    stack.start_worker("w", MILS_FAKE_STEP_SECONDS="0.1")
    out = stack.cli("batch", "resume", "b6")
    assert out.returncode == 0 and "6 job(s) queued again" in out.stdout
    assert wait_finished(stack, "b6", timeout=120)["by_status"] == {"succeeded": 6}
    listed = stack.cli("batch", "list")
    assert listed.returncode == 0 and listed.stdout.startswith("b6\timage-caption\t6/6 done\t2 rejected")
    assert_one_error_line(stack.cli("batch", "status", "nope"), "no batch 'nope'")
    assert_one_error_line(stack.cli("batch", "submit", "bad name", str(manifest)), "a batch name is")
    (tmp_path / "bad.jsonl").write_text('{"path": "images/img001.png"}\n{oops\n')
    assert_one_error_line(stack.cli("batch", "submit", "b7", str(tmp_path / "bad.jsonl")),
                          "bad.jsonl line 2: not JSON")
    assert scalar(stack.url, "SELECT count(*) FROM batches WHERE name = 'b7'") == 0


@pytest.mark.slow
def test_a_batch_on_the_real_embedded_models(stack, tmp_path):
    """Two bundled photos through a worker on the embedded default (llama.cpp LLM, EfficientNet
    + MiniLM scorer), evaluated against the hand-written references of tests/data."""
    from worker.media.samples import sample_path

    references = json.loads((Path(__file__).parents[1] / "data" / "photo_references.json").read_text())
    chosen = [image for image in references["images"] if image["sample"] in ("chelsea", "coffee")]
    for image in chosen:
        (tmp_path / image["file_name"]).write_bytes(sample_path(image["sample"]).read_bytes())
    ids = {image["id"] for image in chosen}
    captions = tmp_path / "captions.json"
    captions.write_text(json.dumps({"images": chosen,
                                    "annotations": [a for a in references["annotations"] if a["image_id"] in ids]}))
    out = stack.cli("batch", "submit", "real", str(captions), "--steps", "1", "--candidates", "5", "--top-k", "4")
    assert out.returncode == 0 and "2 item(s) queued" in out.stdout, out.stderr
    stack.start_worker("real", MILS_HOME=str(SLOW_HOME))
    done = wait_finished(stack, "real", timeout=900)
    assert done["by_status"] == {"succeeded": 2}
    versions = query(stack.url, "SELECT model_versions FROM jobs")
    assert all(v["scorer"]["name"].startswith("embedded") for (v,) in versions), versions
    out = stack.cli("batch", "eval", "real", "--json")
    assert out.returncode == 0, out.stderr
    metrics = json.loads(out.stdout)
    assert metrics["final"]["items"] == 2 and 0 < metrics["final"]["METEOR"] < 1
    results = [json.loads(line) for line in stack.cli("batch", "results", "real", "--format", "jsonl").stdout.splitlines()]
    assert sorted(r["key"] for r in results) == sorted(str(i) for i in ids)
    assert all(r["status"] == "succeeded" and r["output"] for r in results)
