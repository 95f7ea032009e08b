"""The models a server offers by name: the operator's registry file (`MILS_MODELS`, TOML), and the
one place a name given by a user becomes a model spec.

    [generators.llama-8b]
    spec = "openai:meta-llama/Llama-3.1-8B-Instruct@http://gpu1:8000/v1"
    description = "Llama 3.1 8B on the vLLM server of gpu1"
    queue = "gpu"                       # optional: the Celery queue its jobs' steps go to

    [scorers.siglip]
    spec = "open_clip:ViT-SO400M-14-SigLIP@webli"

Tables: generators, scorers (image and audio scorers alike), renderers (text-to-image) and editors
(style transfer); keys: spec (required), description, queue. Names are letters, digits, '.', '_',
'-' (64 at most), so a name never reads as a spec. 'embedded' is a generator and a scorer even
without a file, and a file may not name another model so.

Why: a spec can import code (py:), open any file the server can read (gguf:/path, a directory,
open_clip:ARCH@/path, clap:/path, diffusers:/path) or make the server call any URL (openai:M@URL).
A shared server (token auth) takes only names from the web, so only what the operator wrote runs.
"""

from __future__ import annotations

import functools
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from worker import config
from worker.models.specs import (ModelLoadError, check_generator_spec, check_renderer_spec, check_scorer_spec,
                                 parse_openai_spec)

# role -> (its table in the file, the check its specs pass)
ROLES = {"generator": ("generators", check_generator_spec), "scorer": ("scorers", check_scorer_spec),
         "renderer": ("renderers", check_renderer_spec), "editor": ("editors", check_renderer_spec)}
KEYS = ("spec", "description", "queue")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
QUEUE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
BUILT_IN = {
    ("generator", "embedded"): "the offline Qwen2.5-Coder-0.5B-Instruct on llama.cpp (CPU)",
    ("scorer", "embedded"): "the offline EfficientNet-Lite0 + MiniLM (CPU)",
}


class RegistryError(ValueError):
    """The registry file is malformed; the message names the file, the line or entry, and why."""


@dataclass(frozen=True)
class Entry:
    role: str  # generator, scorer, renderer, editor
    name: str
    spec: str
    description: str = ""
    queue: str | None = None  # None: the spec decides (worker.queue.queue_for)


@dataclass(frozen=True)
class Registry:
    entries: tuple[Entry, ...]
    path: Path | None = None  # None: the built-in names only

    def get(self, role: str, name: str | None) -> Entry | None:
        return next((e for e in self.entries if e.role == role and e.name == name), None)

    def of(self, role: str) -> list[Entry]:
        return [e for e in self.entries if e.role == role]

    def engine_urls(self) -> set[str]:
        """The base URLs of the OpenAI-compatible servers the registry names (no trailing '/')."""
        urls = {parse_openai_spec(e.spec)[1] for e in self.entries if e.spec.startswith("openai:")}
        return {url.rstrip("/") for url in urls if url}


def _line_of(text: str, table: str, name: str) -> int | None:
    """The line of an entry's `[table.name]` header (None when written another way)."""
    header = re.compile(rf'^\s*\[\s*{table}\s*\.\s*["\']?{re.escape(name)}["\']?\s*\]')
    return next((n for n, line in enumerate(text.splitlines(), 1) if header.match(line)), None)


def parse_registry(text: str, where: str = "<registry>") -> Registry:
    """The entries of a registry file's `text` with the built-in ones; RegistryError naming
    `where`, the line (or entry) and what is wrong."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RegistryError(f"{where}: not TOML: {exc}") from None
    entries = [Entry(role, name, "embedded", description) for (role, name), description in BUILT_IN.items()]
    tables = {table: role for role, (table, _) in ROLES.items()}
    for table, named in data.items():
        if table not in tables or not isinstance(named, dict):
            raise RegistryError(f"{where}: unknown table [{table}] (known: {', '.join(tables)})")
        role, check = tables[table], ROLES[tables[table]][1]
        for name, entry in named.items():
            line = _line_of(text, table, name)
            at = f"{where}:{line}: [{table}.{name}]" if line else f"{where}: [{table}.{name}]"
            if not NAME.fullmatch(name):
                raise RegistryError(f"{at}: a name is letters, digits, '.', '_', '-' (64 at most), "
                                    "starting with a letter or digit")
            if (role, name) in BUILT_IN:
                raise RegistryError(f"{at}: {name!r} is built in; give this model another name")
            if not isinstance(entry, dict):
                raise RegistryError(f"{at}: an entry is a table with spec = \"...\"")
            unknown = sorted(set(entry) - set(KEYS))
            if unknown:
                raise RegistryError(f"{at}: unknown key {', '.join(unknown)} (known: {', '.join(KEYS)})")
            if not all(isinstance(v, str) for v in entry.values()):
                raise RegistryError(f"{at}: spec, description and queue are strings")
            if not entry.get("spec", "").strip():
                raise RegistryError(f"{at}: no spec")
            if "queue" in entry and not QUEUE.fullmatch(entry["queue"]):
                raise RegistryError(f"{at}: queue {entry['queue']!r}: letters, digits, '.', '_', '-'")
            try:
                check(entry["spec"].strip())
            except ModelLoadError as exc:
                raise RegistryError(f"{at}: {exc}") from None
            entries.append(Entry(role, name, entry["spec"].strip(), entry.get("description", "").strip(),
                                 entry.get("queue")))
    return Registry(tuple(entries))


def load_registry(path: Path | None) -> Registry:
    """The registry in the file at `path` (None: the built-in names only); RegistryError when
    the file cannot be read or is malformed."""
    if path is None:
        return parse_registry("")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RegistryError(f"{path}: cannot read the model registry (MILS_MODELS): {exc}") from None
    return Registry(parse_registry(text, str(path)).entries, path)


def registry() -> Registry:
    """The registry `MILS_MODELS` names, read again when the file changes."""
    path = config.models_path()
    try:
        stamp = path.stat().st_mtime_ns if path else None
    except OSError:
        stamp = None
    return _cached(path, stamp)


@functools.lru_cache(maxsize=8)
def _cached(path: Path | None, _stamp: int | None) -> Registry:
    return load_registry(path)


def _local_path(spec: str) -> bool:
    """Whether a spec names a file or folder of the server (or imports code from it)."""
    if spec.startswith(("py:", "gguf:", "/", ".", "~")) or ".." in spec:
        return True
    for prefix in ("clap:", "diffusers:"):
        if spec.startswith(prefix):
            return spec.removeprefix(prefix).startswith(("/", ".", "~"))
    if spec.startswith("open_clip:"):
        arch, _, pretrained = spec.removeprefix("open_clip:").partition("@")
        return arch.startswith(("/", ".", "~")) or arch.endswith(".json") or pretrained.startswith(("/", ".", "~"))
    return False


def resolve(role: str, name_or_spec: str, *, raw_allowed: bool, shared: bool = False,
            models: Registry | None = None) -> tuple[str | None, str]:
    """(name, spec) of what a user asked for: a registry name gives (name, its spec); a raw spec
    gives (None, spec), only when `raw_allowed`. `shared`: the request comes from a shared
    server's web (token auth), where even an allowed raw spec may name no file of the server, no
    py: factory and no engine URL the registry does not name. ModelLoadError (a 400) otherwise."""
    models = models or registry()
    entry = models.get(role, name_or_spec)
    if entry is not None:
        return entry.name, entry.spec
    known = ", ".join(e.name for e in models.of(role)) or "none"
    if not raw_allowed:
        raise ModelLoadError(f"{role} {name_or_spec!r} is not a model this server offers; known: {known} "
                             "(GET /api/models)")
    if shared:
        if _local_path(name_or_spec):
            raise ModelLoadError(f"{role} {name_or_spec!r}: a shared server takes no py: specs and no file "
                                 f"paths from the web; name a model it offers: {known}")
        if name_or_spec.startswith("openai:"):
            url = parse_openai_spec(name_or_spec)[1]
            if url is not None and url.rstrip("/") not in models.engine_urls():
                raise ModelLoadError(f"{role} {name_or_spec!r}: {url} is not an engine the registry names; "
                                     f"name a model it offers: {known}")
    return None, name_or_spec
