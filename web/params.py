"""Query-string, form and path parameters shared by the pages and the API, checked with clear
errors before any of them reaches the database: ids in paths (IdConverter), numbers, flags and
page cursors."""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterable, Mapping, Sequence

from flask import request
from sqlalchemy import BigInteger, ColumnElement, Integer
from werkzeug.exceptions import NotFound
from werkzeug.routing import IntegerConverter

from worker.store.queries import CANDIDATE_SORTS, MAX_PAGE, QueryError

# What a database integer column holds. An INTEGER (ids of jobs and batches, steps, positions) is
# 32 bits on PostgreSQL, which refuses a larger number in a query ("integer out of range"); a
# BIGINT (candidates' ids) and SQLite's INTEGER are 64 bits, and the drivers can't even send a
# larger one (OverflowError).
MAX_ID = 2**31 - 1
MIN_INT, MAX_INT = -(2**63), 2**63 - 1


class IdConverter(IntegerConverter):
    """The app's `<int:...>` (create_app puts it in place of werkzeug's): an id in a path is a
    whole number an INTEGER column holds. A larger one names nothing: 404 with a message saying
    so, raised while the URL is matched, so no view and no query ever sees it."""

    def to_python(self, value: str) -> int:
        """Takes the path segment (digits); returns it as an int, or raises NotFound."""
        number = super().to_python(value)
        if number > MAX_ID:
            raise NotFound(f"no such id: {value} is larger than any id can be ({MAX_ID})")
        return number


def refuse_nul_bytes() -> None:
    """before_request of the app: a NUL character in a path segment or a query parameter is a 400
    naming it (forms: `refuse_nul`, where they are read, after the token check). Nothing we take
    holds one, and PostgreSQL's text can't even be compared with one (the query fails: a 500)."""
    refuse_nul((request.view_args or {}).items(), "path parameter")
    refuse_nul(request.args.items(multi=True), "query parameter")


def refuse_nul(items: Iterable[tuple[str | None, object]], where: str) -> None:
    """QueryError naming the first of the (name, value) `items` that holds a NUL character."""
    for name, value in items:
        if name is None:  # a form part without a name: nothing reads it
            continue
        if "\x00" in name or (isinstance(value, str) and "\x00" in value):
            raise QueryError(f"the {where} {name!r} holds a NUL character")


def refuse_repeated(fields, multi: Iterable[str] = ()) -> None:
    """QueryError naming the first form field sent more than once (a MultiDict), but those in
    `multi` (fields that are lists, e.g. an arithmetic job's text lines): which value was meant
    can't be told, and taking the first would let the others pass unchecked (as `str_arg`)."""
    lists = set(multi)
    for name, values in fields.lists():
        if len(values) > 1 and name not in lists:
            raise QueryError(f"the form field {name!r} was sent {len(values)} times; send it once")


def form_fields() -> Mapping[str, str]:
    """The request's form fields, for an endpoint whose body is optional: a body sent that is not
    a form (a multipart body without one readable part) is a QueryError, not taken for none."""
    if request.content_length and not request.form and not request.files:
        raise QueryError("the request's body is not a form (multipart/form-data or "
                         "application/x-www-form-urlencoded fields); send the fields, or no body")
    return request.form


def str_arg(args: Mapping[str, str], name: str, default: str = "") -> str:
    """The one value of parameter `name` (`default` when it is not sent). A parameter sent more than once
    (`?limit=5&limit=x`) is a QueryError: which one was meant can't be told, and taking the first
    would let the others pass unchecked. `args` is a MultiDict (request.args, request.form) or a
    plain mapping (one value each)."""
    values = args.getlist(name) if hasattr(args, "getlist") else [args.get(name, "")]
    if len(values) > 1:
        raise QueryError(f"{name} is sent {len(values)} times; send it once")
    return values[0] if values else default


def int_arg(args: Mapping[str, str], name: str, default: int | None = None, *,
            low: int | None = None, high: int | None = None) -> int | None:
    raw = str_arg(args, name)
    if raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise QueryError(f"{name} must be a whole number, not {raw!r}") from None
    if not MIN_INT <= value <= MAX_INT:
        raise QueryError(f"{name} must be between {MIN_INT} and {MAX_INT}, not {value}")
    if (low is not None and value < low) or (high is not None and value > high):
        if low is not None and high is not None and high < MAX_ID:
            bounds = f"between {low} and {high}"
        else:  # the side it is beyond ("between 0 and 2147483647" says little)
            bounds = f"at least {low}" if low is not None and value < low else f"at most {high}"
        raise QueryError(f"{name} must be {bounds}, not {value}")
    return value


def float_arg(args: Mapping[str, str], name: str) -> float | None:
    raw = str_arg(args, name)
    if raw.strip() == "":
        return None
    try:
        return float(raw)
    except ValueError:
        raise QueryError(f"{name} must be a number, not {raw!r}") from None


def bool_arg(args: Mapping[str, str], name: str) -> bool:
    raw = str_arg(args, name).strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise QueryError(f"{name} must be true or false, not {raw!r}")


def cursor_arg(args: Mapping[str, str], columns: Sequence[ColumnElement] | None = None) -> str | None:
    """The `cursor` of a paged list, or None. A cursor is base64 of a JSON list of the values of
    the last row's order columns (the store's encode_cursor): `columns` are those columns, or
    None for a list ordered by INTEGER columns only (jobs, batches, a batch's items). A cursor
    that is not such a list, or holds a value its column can't hold, is a QueryError (400)
    here rather than a type or range error of the database (500)."""
    cursor = str_arg(args, "cursor") or None
    if cursor is None:
        return None
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except ValueError:  # not base64, not UTF-8 or not JSON
        raise QueryError("bad cursor: use the next_cursor of a previous page") from None
    if not isinstance(values, list) or not values:
        raise QueryError("bad cursor: use the next_cursor of a previous page")
    # (A cursor of another length is the store's to refuse: it names the mix-up.)
    kinds = [column.type for column in columns] if columns is not None else [Integer()] * len(values)
    if not all(_fits(value, kind) for value, kind in zip(values, kinds)):
        raise QueryError("bad cursor: use the next_cursor of a previous page")
    return cursor


def _fits(value, kind) -> bool:
    """Can a column of SQLAlchemy type `kind` be compared with the JSON value `value`?"""
    if isinstance(value, bool):
        return False
    if isinstance(kind, BigInteger):
        return isinstance(value, int) and MIN_INT <= value <= MAX_INT
    if isinstance(kind, Integer):
        return isinstance(value, int) and -MAX_ID - 1 <= value <= MAX_ID
    return isinstance(value, (int, float)) and math.isfinite(value)


def candidate_args(args: Mapping[str, str], default_limit: int = 100) -> dict:
    """Filters, sort and page of a candidate history request (see worker.store.queries.candidates_page)."""
    sort = str_arg(args, "sort") or "step"
    if sort not in CANDIDATE_SORTS:
        raise QueryError(f"unknown sort {sort!r}; known: {', '.join(CANDIDATE_SORTS)}")
    return {
        "step": int_arg(args, "step", low=0, high=MAX_ID),
        "top_only": bool_arg(args, "top"),
        "q": str_arg(args, "q").strip() or None,
        "sort": sort,
        "cursor": cursor_arg(args, [column for column, _ in CANDIDATE_SORTS[sort]]),
        "limit": int_arg(args, "limit", default_limit, low=1, high=MAX_PAGE),
    }


def job_list_args(args: Mapping[str, str], default_limit: int = 50) -> dict:
    return {
        "status": str_arg(args, "status") or None,
        "task": str_arg(args, "task") or None,
        "q": str_arg(args, "q").strip() or None,
        "cursor": cursor_arg(args),
        "limit": int_arg(args, "limit", default_limit, low=1, high=MAX_PAGE),
    }


def batch_list_args(args: Mapping[str, str], default_limit: int = 50) -> dict:
    return {"cursor": cursor_arg(args), "limit": int_arg(args, "limit", default_limit, low=1, high=MAX_PAGE)}


def batch_item_args(args: Mapping[str, str], default_limit: int = 50) -> dict:
    """Filter and page of a batch's items (see worker.store.batches.items_page)."""
    return {"status": str_arg(args, "status").strip() or None, "cursor": cursor_arg(args),
            "limit": int_arg(args, "limit", default_limit, low=1, high=MAX_PAGE)}
