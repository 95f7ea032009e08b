"""The MILS optimizer core: plain data in, plain data out.

It imports neither Celery, Flask, SQLAlchemy nor any model library. A job is a
`Settings`, a `Generator` and a `Scorer`; `bootstrap` makes step 0 from the
initial pool and `step` makes each next step from the previous `State`.
"""

from worker.core.optimizer import Scored, Seen, State, StepResult, bootstrap, run, step, unique_texts
from worker.core.parsing import normalize, parse_answer, parse_candidates
from worker.core.protocols import (Completion, Generator, GeneratorError, GeneratorUnavailable, Message, Score,
                                   Scorer)
from worker.core.settings import Settings, SettingsError

__all__ = [
    "Completion",
    "Generator",
    "GeneratorError",
    "GeneratorUnavailable",
    "Message",
    "Score",
    "Scored",
    "Scorer",
    "Seen",
    "Settings",
    "SettingsError",
    "State",
    "StepResult",
    "bootstrap",
    "normalize",
    "parse_answer",
    "parse_candidates",
    "run",
    "step",
    "unique_texts",
]
