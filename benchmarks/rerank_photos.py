"""Re-rank a finished photo batch's candidates with variants of the embedded scorer, without
running the LLM again: which caption would each variant have picked at step 0 (the best of the
initial pool) and at the end (the best of the pool and every candidate the LLM wrote), and how
do those captions score against the hand-written references (pycocoevalcap)?

    python benchmarks/batch_photos.py --home /tmp/mils-batch-photos      # first: the candidates
    python benchmarks/rerank_photos.py --home /tmp/mils-batch-photos

A variant changes how the scorer puts what it sees into words. The LLM's candidates were written
with the shipped scorer's feedback, so this is a first-order estimate of a variant, for choosing
one; the choice is then checked with a full batch_photos.py run. Results go to
benchmarks/results/rerank_photos.json (--out to name it).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
import _common  # noqa: E402


def variants():
    """name -> a RecogniserScorer subclass. The eyes' findings are memoised by photo, since no
    variant changes what the eyes see, only the words it is put into."""
    import numpy as np
    from worker.models import recogniser_scorer as rs

    memo: dict[str, tuple] = {}

    class Shipped(rs.RecogniserScorer):
        def see(self, image):
            key = rs._pixels_id(image)
            if key not in memo:
                memo[key] = super().see(image)
            return memo[key]

        def _background(self, photos):  # no disk cache: its key does not know the variants
            return np.stack([self._image_vector(photo)[0] for photo in photos])

    class BareLabels(Shipped):
        label_template = "{}"

    class BarePhrases(Shipped):
        def phrases(self, seen):
            # The same findings without the photographic frame ("a photo of", "portrait", "photo").
            bare = {"a close-up portrait of a person": "a person's face", "a photo of a person": "a person",
                    "a photo of two people": "two people", "a photo of a group of people": "a group of people"}
            out = []
            for text, weight in super().phrases(seen):
                text = bare.get(text, text)
                out.append((text[:-len(" photo")] if text.endswith(" photo") else text, weight))
            return out

    class Templates(Shipped):
        # CLIP's 7 ImageNet templates (Radford et al. 2021, the CLIP repository's notebook
        # "Prompt_Engineering_for_ImageNet"): each label is the mean of its 7 wordings.
        TEMPLATES = ("itap of a {}.", "a bad photo of the {}.", "a origami {}.", "a photo of the large {}.",
                     "a {} in a video game.", "art of the {}.", "a photo of the small {}.")

        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            per = [self.embed_texts([t.format(label) for label in self.labels]) for t in self.TEMPLATES]
            mean = np.mean(per, axis=0)
            self.label_embeddings = mean / np.linalg.norm(mean, axis=1, keepdims=True)
            self.background = self._background([decode_image(sample_path(n).read_bytes()) for n in SAMPLES])

    def weighted(name, **weights):
        class Weighted(Shipped):
            def phrases(self, seen):
                table = {"people": seen.people_phrase(), "text": seen.text_phrase(), "colours": seen.colour_phrase()}
                base = {"people": rs.W_PEOPLE, "text": rs.W_TEXT, "colours": rs.W_COLOURS}
                return [(t, weights.get(k, base[k])) for k, t in table.items() if t and weights.get(k, base[k]) > 0]
        Weighted.__name__ = name
        return Weighted

    def background(beta):
        class Background(Shipped):
            def encode_sample(self, sample):
                own = rs._pixels_id(sample)
                rest = self.background[[i != own for i in self.background_ids]]
                vector, _ = self._image_vector(sample)
                return (vector - beta * rest.mean(axis=0)).astype(np.float32)
        return Background

    from worker.media import decode_image
    from worker.media.samples import SAMPLES, sample_path

    return {"shipped": Shipped, "bare-labels": BareLabels, "bare-phrases": BarePhrases, "clip-7-templates": Templates,
            "text-0.5": weighted("t", text=0.5), "colours-0": weighted("c", colours=0), "people-1": weighted("p", people=1.0),
            "background-0.5": background(0.5), "background-0.7": background(0.7), "background-0.8": background(0.8),
            "background-1.5": background(1.5)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", default="/tmp/mils-batch-photos")
    parser.add_argument("--name", default="photos")
    parser.add_argument("--fluency", type=float, nargs="*", default=[0.15])
    parser.add_argument("--only", nargs="*", help="variants to run (default: all)")
    parser.add_argument("--out", default="rerank_photos", help="results file name (no extension)")
    args = parser.parse_args()
    import numpy as np

    home = _common.use_home(args.home)

    from scorer_mrr import mean_reciprocal_rank, references as reference_captions

    from worker.evaluation import caption_metrics
    from worker.kinds import get_kind
    from worker.media import decode_image
    from worker.models.fluency import FluencyGuard
    from worker.models import load_scorer

    db = sqlite3.connect(home / "mils.db")
    items = db.execute("""SELECT i.item_key, i."references", i.job_id, a.data FROM batch_items i
                          JOIN batches b ON b.id = i.batch_id JOIN jobs j ON j.id = i.job_id
                          JOIN artifacts a ON a.sha256 = j.input_sha256 WHERE b.name = ?""", (args.name,)).fetchall()
    references = {key: json.loads(refs) for key, refs, _, _ in items}
    written = {key: [t for (t,) in db.execute("SELECT text FROM candidates WHERE job_id = ? AND step > 0", (job,))]
               for key, _, job, _ in items}
    pool = list(get_kind("image-caption").pool)
    shipped = load_scorer("embedded")
    runs, picks, mrr = {}, {}, {}
    for name, cls in variants().items():
        if args.only and name not in args.only:
            continue
        scorer = cls(shipped.recogniser, shipped.embedder, shipped.labels, faces=shipped.faces, reader=shipped.reader)
        for weight in args.fluency:
            guarded = FluencyGuard(scorer, weight) if weight else scorer
            step0, final = {}, {}
            for key, _, _, data in items:
                features = guarded.encode_sample(decode_image(data))
                texts = pool + written[key]
                scores = np.asarray(guarded.score_pool(features, texts), dtype=float)
                step0[key] = pool[int(np.argmax(scores[:len(pool)]))]
                final[key] = texts[int(np.argmax(scores))]
            label = f"{name} fluency={weight}"
            mrr[label] = round(mean_reciprocal_rank(scorer, *reference_captions())[0], 4)
            runs[(label, "step0")], runs[(label, "final")] = step0, final
            picks[label] = {key: [step0[key], final[key]] for key in step0}
            print(label, "done", flush=True)
    metrics = caption_metrics(references, runs)
    table, data = [], {"machine": _common.machine_info(), "home": str(home), "variants": {}}
    for label in picks:
        s0, fin = metrics[(label, "step0")], metrics[(label, "final")]
        data["variants"][label] = {"step0": s0, "final": fin, "mrr": mrr[label], "captions": picks[label]}
        table.append([label, *(f"{100 * s0[m]:.1f} / {100 * fin[m]:.1f}" for m in ("Bleu_4", "METEOR", "CIDEr")),
                      mrr[label]])
    print(_common.md_table(["variant", "BLEU-4 step0 / final", "METEOR", "CIDEr", "MRR"], table))
    print(_common.write_results(args.out, data))


if __name__ == "__main__":
    main()
