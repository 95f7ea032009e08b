"""Does the embedded scorer's order carry CIDEr's signal? Read from a finished photo batch:

1. after each step, the CIDEr of the top K's captions: the scorer's best (rank 1), the mean of the
   K, and the best of the K (an oracle that knows the references);
2. per photo, Spearman's rank correlation between the score and the CIDEr of every caption the LLM
   wrote for it;
3. the final caption picked by consensus instead of by score (minimum-Bayes-risk decoding: the text
   of the top K most similar to the others, Kumar & Byrne 2004; for captions, the consensus
   re-ranking of Devlin et al. 2015): similarity of two captions by the scorer's own text embedder
   (cosine) or by BLEU-2 of one against the other alone, each other text weighted alike or by
   exp((score - best) / sd of the K's scores); ties go to the better-scored text. Picks only the
   output; the loop and its top K are as run. A job that stopped early counts with its last step.

    python benchmarks/batch_photos.py --home /tmp/b0            # first: a batch to read
    python benchmarks/cider_signal.py --home /tmp/b0 [--name photos] [--out cider_signal_seed0]

CIDEr-D as pycocoevalcap computes it, document frequencies from the batch's references: a
caption's value is its photo's value in a corpus call where the other photos have a dummy caption
(their values do not change its own). Results go to benchmarks/results/OUT.json.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sqlite3
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

RULES = ("score", "embedder", "embedder, score-weighted", "BLEU-2", "BLEU-2, score-weighted")


def cider_of(references: dict[str, list[str]], key: str, caption: str) -> float:
    """CIDEr-D of one caption for item `key`, with the document frequencies of all references."""
    from pycocoevalcap.cider.cider_scorer import CiderScorer

    scorer = CiderScorer(n=4, sigma=6.0)
    keys = list(references)
    for other in keys:
        scorer += (caption if other == key else "x", references[other])
    return float(scorer.compute_score()[1][keys.index(key)])


def consensus(texts: list[str], scores: np.ndarray, similarity: np.ndarray, weighted: bool) -> str:
    """The text with the highest mean similarity to the others (each weighted, see module doc);
    `texts` best-scored first, so a tie goes to the better-scored text."""
    import numpy as np

    if len(texts) < 2:
        return texts[0]
    sim = similarity.copy()
    np.fill_diagonal(sim, 0.0)
    spread = scores.std()
    w = np.exp((scores - scores.max()) / spread) if weighted and spread > 0 else np.ones(len(texts))
    utility = (sim * w[None, :]).sum(1) / (w.sum() - w)
    return texts[int(np.flatnonzero(np.isclose(utility, utility.max()))[0])]


def bleu2_matrix(texts: list[str]) -> np.ndarray:
    """(K, K): BLEU-2 of text i with text j as its one reference (0 on the diagonal)."""
    import numpy as np
    from pycocoevalcap.bleu.bleu import Bleu

    k = len(texts)
    out = np.zeros((k, k))
    for i in range(k):
        for j in range(k):
            if i != j:
                with contextlib.redirect_stdout(io.StringIO()):
                    out[i, j] = Bleu(2).compute_score({0: [texts[j]]}, {0: [texts[i]]}, verbose=0)[0][1]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", required=True)
    parser.add_argument("--name", default="photos")
    parser.add_argument("--out", default="cider_signal")
    args = parser.parse_args()
    import numpy as np

    home = _common.use_home(args.home)

    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer
    from scipy.stats import spearmanr

    from worker.evaluation import caption_metrics
    from worker.models import load_scorer

    db = sqlite3.connect(home / "mils.db")
    items = db.execute("""SELECT i.item_key, i."references", i.job_id FROM batch_items i
                          JOIN batches b ON b.id = i.batch_id WHERE b.name = ? ORDER BY i.id""", (args.name,)).fetchall()
    items = [item for item in items if json.loads(item[1] or "[]")]  # as caption_metrics: items with references
    references = {key: json.loads(refs) for key, refs, _ in items}
    tops, written, last_of, captions_of = {}, {}, {}, {}  # captions_of: every text of the item's job
    for key, _, job in items:
        written[key] = db.execute("SELECT text, score FROM candidates WHERE job_id = ? AND step > 0", (job,)).fetchall()
        captions_of[key] = {t for t, _ in written[key]}
        for (step,) in db.execute("SELECT DISTINCT step FROM top_entries WHERE job_id = ? ORDER BY step", (job,)):
            tops[key, step] = db.execute("""SELECT c.text, c.score FROM top_entries t JOIN candidates c
                ON c.id = t.candidate_id WHERE t.job_id = ? AND t.step = ? ORDER BY t.rank""", (job, step)).fetchall()
            captions_of[key].update(t for t, _ in tops[key, step])
            last_of[key] = step
    last = max(last_of.values())

    # pycocoevalcap's tokenizer, once for every text, as caption_metrics does
    tokenize = {("ref", k): [{"caption": c} for c in refs] for k, refs in references.items()}
    tokenize.update({("hyp", t): [{"caption": t}] for texts in captions_of.values() for t in texts})
    with contextlib.redirect_stderr(io.StringIO()):
        tokens = PTBTokenizer().tokenize(tokenize)
    refs_tok = {k: tokens[("ref", k)] for k in references}
    cider = {(k, t): cider_of(refs_tok, k, tokens[("hyp", t)][0]) for k, texts in captions_of.items() for t in texts}

    per_step = []
    for step in range(last + 1):
        rows = [[cider[k, t] for t, _ in tops[k, min(step, last_of[k])]] for k in references]  # a job stopped early: its last
        per_step.append({"step": step, "rank1": float(np.mean([r[0] for r in rows])),
                         "mean_top_k": float(np.mean([np.mean(r) for r in rows])),
                         "oracle": float(np.mean([max(r) for r in rows]))})
    correlation = {}
    for key in references:
        scores = [s for _, s in written[key]]
        values = [cider[key, t] for t, _ in written[key]]
        rho = float(spearmanr(scores, values).statistic) if len(values) > 1 else float("nan")
        correlation[key] = {"captions": len(values), "spearman": None if np.isnan(rho) else rho,  # None: JSON has no NaN
                            "mean_cider": float(np.mean(values)) if values else None}

    embed = load_scorer("embedded").embed_texts
    runs = {}
    for step in (0, last):
        for rule in RULES:
            picks = {}
            for key in references:
                top = tops[key, min(step, last_of[key])]
                texts_k = [t for t, _ in top]
                scores = np.array([s for _, s in top])
                if rule == "score":
                    picks[key] = texts_k[0]
                    continue
                e = embed(texts_k) if rule.startswith("embedder") else None
                sim = e @ e.T if e is not None else bleu2_matrix([tokens[("hyp", t)][0] for t in texts_k])
                picks[key] = consensus(texts_k, scores, sim, weighted=rule.endswith("weighted"))
            runs[rule, step] = picks
    metrics = caption_metrics(references, runs)

    print(_common.md_table(["step", "CIDEr of rank 1", "mean of the top K", "best of the top K"],
                           [[r["step"], *(f"{100 * r[m]:.1f}" for m in ("rank1", "mean_top_k", "oracle"))]
                            for r in per_step]))
    rhos = [c["spearman"] for c in correlation.values() if c["spearman"] is not None]
    print(f"Spearman(score, CIDEr) over the LLM's captions, per photo: mean {np.mean(rhos):+.3f}, "
          f"positive for {sum(r > 0 for r in rhos)} of {len(rhos)}")
    print(_common.md_table(["final picked by", "METEOR step 0 / final", "CIDEr step 0 / final"],
                           [[rule, *(f"{100 * metrics[rule, 0][m]:.1f} / {100 * metrics[rule, last][m]:.1f}"
                                     for m in ("METEOR", "CIDEr"))] for rule in RULES]))
    data = {"machine": _common.machine_info(), "home": str(home), "per_step": per_step, "correlation": correlation,
            "picks": {rule: {"step0": metrics[rule, 0], "final": metrics[rule, last],
                             "captions": {k: [runs[rule, 0][k], runs[rule, last][k]] for k in references}}
                      for rule in RULES}}
    print(_common.write_results(args.out, data))


if __name__ == "__main__":
    main()
