"""Query-string and form parameters shared by the pages and the API, checked with clear errors."""

from __future__ import annotations

from collections.abc import Mapping

from worker.store.queries import CANDIDATE_SORTS, MAX_PAGE, QueryError


def int_arg(args: Mapping[str, str], name: str, default: int | None = None, *,
            low: int | None = None, high: int | None = None) -> int | None:
    raw = args.get(name, "")
    if raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise QueryError(f"{name} must be a whole number, not {raw!r}") from None
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise QueryError(f"{name} must be {bounds}, not {value}")
    return value


def float_arg(args: Mapping[str, str], name: str) -> float | None:
    raw = args.get(name, "")
    if raw.strip() == "":
        return None
    try:
        return float(raw)
    except ValueError:
        raise QueryError(f"{name} must be a number, not {raw!r}") from None


def bool_arg(args: Mapping[str, str], name: str) -> bool:
    raw = args.get(name, "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise QueryError(f"{name} must be true or false, not {raw!r}")


def candidate_args(args: Mapping[str, str], default_limit: int = 100) -> dict:
    """Filters, sort and page of a candidate history request (see worker.store.queries.candidates_page)."""
    sort = args.get("sort") or "step"
    if sort not in CANDIDATE_SORTS:
        raise QueryError(f"unknown sort {sort!r}; known: {', '.join(CANDIDATE_SORTS)}")
    return {
        "step": int_arg(args, "step", low=0),
        "top_only": bool_arg(args, "top"),
        "q": args.get("q", "").strip() or None,
        "sort": sort,
        "cursor": args.get("cursor") or None,
        "limit": int_arg(args, "limit", default_limit, low=1, high=MAX_PAGE),
    }


def job_list_args(args: Mapping[str, str], default_limit: int = 50) -> dict:
    return {
        "status": args.get("status") or None,
        "task": args.get("task") or None,
        "q": args.get("q", "").strip() or None,
        "cursor": args.get("cursor") or None,
        "limit": int_arg(args, "limit", default_limit, low=1, high=MAX_PAGE),
    }


def batch_list_args(args: Mapping[str, str], default_limit: int = 50) -> dict:
    return {"cursor": args.get("cursor") or None, "limit": int_arg(args, "limit", default_limit, low=1, high=MAX_PAGE)}


def batch_item_args(args: Mapping[str, str], default_limit: int = 50) -> dict:
    """Filter and page of a batch's items (see worker.store.batches.items_page)."""
    return {"status": args.get("status", "").strip() or None, "cursor": args.get("cursor") or None,
            "limit": int_arg(args, "limit", default_limit, low=1, high=MAX_PAGE)}
