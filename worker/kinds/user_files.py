"""A captioning job's prompt and initial pool brought by its user: a prompt file (a template with
named placeholders) and a pool file (one text per line). An ablation of MILS is a change of exactly
these, and a reproduction needs the reference code's own (its prompts/*.txt and
init_descriptions/*.txt run unchanged).

    check_prompt(data, name) -> str          the template, checked (UTF-8, size, placeholders)
    check_pool(data, name) -> list[str]      the texts step 0 scores (checked, deduplicated)
    UserTemplate(text)                       the generator's conversation made from the template

Both are checked at submission and raise SettingsError naming the file and what is wrong, before
anything is stored; the store keeps each once by content hash (worker.store).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from worker.core import Message, Scored, SettingsError, unique_texts
from worker.kinds.prompts import scored_lines

# The placeholders a template must have, as the reference code (facebookresearch/MILS,
# optimization_utils/generator.py) names them, and the one it may have.
REQUIRED = {"descriptions": "the scored texts, one `score: text` line each, best first",
            "requested_number": "how many new texts are asked for"}
OPTIONAL = {"max_words": "the words allowed per text (--max-words)"}
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")

MAX_PROMPT_BYTES = 64 * 1024
# The reference's image pool is about 29,000 lines (1.6 MB); room for ten times that.
MAX_POOL_TEXTS = 300_000
MAX_POOL_BYTES = 32 * 1024 * 1024
MAX_POOL_TEXT_CHARS = 1000  # a longer "text" is a file of another kind (a JSON dump, a paragraph)

# The kinds whose prompt is a caption template with a fixed initial pool.
USER_FILE_TASKS = ("image-caption", "video-caption", "audio-caption")

# What each file is, as the forms and the OpenAPI description say it (the CLI's help says the same).
PROMPT_FILE_HELP = ("A prompt template for the LLM (UTF-8 text) with the placeholders {descriptions} (the scored "
                    "texts, one 'score: text' line each, best first) and {requested_number} (how many new ones); "
                    "{max_words} may be used too. The reference code's prompts/*.txt run as they are. "
                    "Default: the task's own prompt. Captioning tasks.")
POOL_FILE_HELP = ("An initial pool for step 0: one text per line (UTF-8), e.g. the reference code's "
                  "init_descriptions/*.txt (about 29,000 lines). Default: the task's own pool. Captioning tasks.")


def _text(data: bytes, what: str, limit: int) -> str:
    if len(data) > limit:
        raise SettingsError(f"{what} is {len(data):,} bytes; at most {limit:,}")
    if b"\x00" in data:
        raise SettingsError(f"{what} is not text (it holds NUL bytes: a binary file?)")
    try:
        text = data.decode("utf-8-sig")  # a byte order mark, as some editors write, is dropped
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise SettingsError(f"{what} is not UTF-8 text (line {line}, byte {exc.start})") from None
    if not text.strip():
        raise SettingsError(f"{what} is empty")
    return text


def placeholders(template: str) -> list[str]:
    """The `{name}` placeholders of a template, in order of first use."""
    return list(dict.fromkeys(_PLACEHOLDER.findall(template)))


def check_prompt(data: bytes, name: str = "the prompt file") -> str:
    """The prompt template in `data`, or SettingsError: not UTF-8, over MAX_PROMPT_BYTES, empty,
    a required placeholder missing or an unknown one used (a typo would reach the LLM as is).
    Braces that are not a `{name}` (e.g. a JSON example) are left as they are."""
    what = f"prompt file {name}"
    template = _text(data, what, MAX_PROMPT_BYTES)
    used = placeholders(template)
    missing = [f"{{{p}}} ({meaning})" for p, meaning in REQUIRED.items() if p not in used]
    if missing:
        raise SettingsError(f"{what} has no placeholder {' and no '.join(missing)}")
    unknown = [f"{{{p}}}" for p in used if p not in REQUIRED and p not in OPTIONAL]
    if unknown:
        known = ", ".join(f"{{{p}}}" for p in (*REQUIRED, *OPTIONAL))
        raise SettingsError(f"{what} uses unknown placeholder {', '.join(unknown)}; known: {known}")
    return template


def check_pool(data: bytes, name: str = "the pool file") -> list[str]:
    """The initial pool in `data` (one text per line; blank lines skipped; surrounding spaces
    dropped) as step 0 scores it: deduplicated like core.unique_texts, in file order. SettingsError
    for a file that is not UTF-8 text, too large, empty, or has a line over MAX_POOL_TEXT_CHARS
    (named by its number)."""
    what = f"pool file {name}"
    text = _text(data, what, MAX_POOL_BYTES)
    texts = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if len(line) > MAX_POOL_TEXT_CHARS:
            raise SettingsError(f"{what}: line {number} has {len(line):,} characters; a text has at most "
                                f"{MAX_POOL_TEXT_CHARS:,}")
        if line:
            texts.append(line)
    if len(texts) > MAX_POOL_TEXTS:
        raise SettingsError(f"{what} has {len(texts):,} texts; at most {MAX_POOL_TEXTS:,}")
    unique = unique_texts(texts)
    if not unique:
        raise SettingsError(f"{what} has no text with a word in it")
    return unique


def check_task(task: str, *, prompt: bool, pool: bool) -> None:
    """SettingsError when a prompt or pool file is given for a task that takes none."""
    given = [what for what, here in (("a prompt file", prompt), ("a pool file", pool)) if here]
    if given and task not in USER_FILE_TASKS:
        raise SettingsError(f"{' and '.join(given)} are for the captioning tasks ({', '.join(USER_FILE_TASKS)}), "
                            f"not {task}")


@dataclass(frozen=True)
class UserTemplate:
    """The user's template as the generator's conversation: one user message (as the reference
    code sends it, no system message) with the placeholders filled in, in one pass (a text that
    happens to hold "{requested_number}" stays as it is) and not with str.format, so other braces
    in the template stay as written."""

    text: str

    def messages(self, examples: Sequence[Scored], n: int, max_words: int) -> list[Message]:
        values = {"descriptions": scored_lines(examples), "requested_number": str(n), "max_words": str(max_words)}
        filled = _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), self.text)
        return [{"role": "user", "content": filled}]
