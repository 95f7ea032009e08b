"""Caption metrics against references: the standard COCO caption evaluation (pycocoevalcap,
the code behind the COCO captioning leaderboard and the MILS paper's tables).

    caption_metrics(references, runs)   BLEU-1..4, METEOR, ROUGE-L, CIDEr (and SPICE when it can
                                        run) for several sets of captions of the same items at once

Values are fractions (0..1; CIDEr can exceed 1), as pycocoevalcap returns them; papers print them
times 100. The computation is COCOEvalCap.evaluate()'s: PTB tokenization (lower case, punctuation
removed), then each scorer over the items that have both references and a caption. BLEU and CIDEr
are corpus-level: CIDEr's document frequencies come from the references of the items evaluated.

The PTB tokenizer, METEOR and SPICE are Java programs (a `java` on the PATH). SPICE also needs the
Stanford CoreNLP 3.6.0 jars in pycocoevalcap's spice/lib folder, which pycocoevalcap downloads on
first use; we never download: without them SPICE is skipped and `spice_unavailable()` says why.
"""

from __future__ import annotations

import contextlib
import io
import shutil
from collections.abc import Hashable, Mapping, Sequence
from importlib.resources import files
from typing import Any

METRICS = ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr")
SPICE_JARS = ("stanford-corenlp-3.6.0.jar", "stanford-corenlp-3.6.0-models.jar")


class EvaluationError(RuntimeError):
    """The metrics cannot be computed here (no Java, no items with references)."""


def java_missing() -> str | None:
    if shutil.which("java") is None:
        return ("the COCO caption metrics need Java (pycocoevalcap's PTB tokenizer and METEOR are Java "
                "programs): install a JRE, e.g. `apt-get install default-jre-headless`")
    return None


def spice_unavailable() -> str | None:
    """Why SPICE cannot run here, or None when it can."""
    missing = java_missing()
    if missing:
        return missing
    lib = files("pycocoevalcap") / "spice" / "lib"
    absent = [jar for jar in SPICE_JARS if not (lib / jar).is_file()]
    if absent:
        return (f"SPICE skipped: it needs Stanford CoreNLP 3.6.0 ({', '.join(absent)}) in {lib}, which cannot "
                "be downloaded here; put the jars there to compute it")
    return None


def caption_metrics(references: Mapping[str, Sequence[str]],
                    runs: Mapping[Hashable, Mapping[str, str]],
                    per_item: Sequence[str] = ()) -> dict[Hashable, dict[str, float]]:
    """The metrics of each run's captions (item key -> caption) against `references` (item key
    -> its reference captions), over the items that have both. Every caption of every run is
    tokenized in one call (the tokenizer treats lines independently, so this equals one call per
    run). Returns run -> {metric: value, "items": count}, and for the metrics named in `per_item`
    (METEOR, ROUGE_L, CIDEr: one score per item) "per_item": {metric: {key: score}}, each item's
    score as the scorer computed it for the run (CIDEr's with the run's document frequencies).
    EvaluationError without Java or items."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    missing = java_missing()
    if missing:
        raise EvaluationError(missing)
    refs = {key: list(texts) for key, texts in references.items() if texts}
    runs = {run: {key: text for key, text in captions.items() if key in refs} for run, captions in runs.items()}
    if not any(runs.values()):
        raise EvaluationError("no item has both reference captions and a caption to evaluate")
    to_tokenize = {("ref", key): [{"caption": t} for t in texts] for key, texts in refs.items()}
    for run, captions in runs.items():
        to_tokenize.update({(run, "hyp", key): [{"caption": text}] for key, text in captions.items()})
    tokens = PTBTokenizer().tokenize(to_tokenize)

    scorers = [(Bleu(4), METRICS[:4]), (Meteor(), ("METEOR",)), (Rouge(), ("ROUGE_L",)), (Cider(), ("CIDEr",))]
    if spice_unavailable() is None:
        from pycocoevalcap.spice.spice import Spice

        scorers.append((Spice(), ("SPICE",)))
    results = {}
    # BLEU prints its internals on stdout, where they would corrupt a `--json` answer.
    with contextlib.redirect_stdout(io.StringIO()), _closing(scorers):
        for run, captions in runs.items():
            gts = {key: tokens[("ref", key)] for key in captions}
            res = {key: tokens[(run, "hyp", key)] for key in captions}
            values: dict[str, Any] = {"items": len(captions)}
            items: dict[str, dict[str, float]] = {}
            if captions:
                for scorer, names in scorers:
                    score, scores = scorer.compute_score(gts, res)
                    values.update((name, float(v)) for name, v in zip(names, score if len(names) > 1 else [score]))
                    if len(names) == 1 and names[0] in per_item:  # scores come in the order of gts' keys
                        items[names[0]] = {key: float(v) for key, v in zip(gts, scores, strict=True)}
            if per_item:
                values["per_item"] = items
            results[run] = values
    return results


@contextlib.contextmanager
def _closing(scorers):
    try:
        yield
    finally:
        for scorer, _ in scorers:
            process = getattr(scorer, "meteor_p", None)  # METEOR keeps a Java process open
            if process is not None:
                process.kill()
                process.wait()
