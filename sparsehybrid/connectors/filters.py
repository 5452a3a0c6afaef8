"""The payload-filter language shared by every backend.

Users write plain dicts over document metadata fields; this module parses them once into typed
conditions (validated, so bad filters fail before reaching a store), and each connector translates
the conditions into its own query DSL. Values are always sent as data, never spliced into strings.

    {"lang": "en"}                         equality (str, int or bool)
    {"lang": ["en", "ko"]}                 any of
    {"year": {"gte": 2000, "lt": 2010}}    numeric range (gt, gte, lt, lte)
    {"lang": {"eq": "en"}}, {"lang": {"in": [...]}}   explicit forms

All conditions must hold (AND). Dotted keys address nested metadata (``{"a.b": 1}``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

Scalar = str | int | bool
_RANGE_OPS = ("gt", "gte", "lt", "lte")
_FIELD_RE = re.compile(r"^[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*$")


class FilterError(ValueError):
    """A filter is malformed or names a field the collection does not have."""


@dataclass(frozen=True)
class Condition:
    field: str
    op: Literal["eq", "in", "range"]
    value: Any  # Scalar for eq, tuple[Scalar, ...] for in, dict[str, float] for range


#: Stores keep integers as signed 64-bit: a larger one can never match (and some clients crash on it).
INT64 = (-(2**63), 2**63 - 1)
#: The type recorded for a literal metadata key containing a dot: filters read dots as nesting.
DOTTED_KEY = "unfilterable (its key contains '.')"


def _check_scalar(field: str, value: Any) -> Scalar:
    if isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        if not INT64[0] <= value <= INT64[1]:
            raise FilterError(f"filter field {field!r}: integer {value} is outside the 64-bit range stores keep")
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise FilterError(f"filter field {field!r}: value {value!r} must be a string, integer or boolean")


def parse_filter(spec: Mapping[str, Any] | None) -> list[Condition]:
    """Parse and validate a user filter dict into conditions (empty list for no filter)."""
    if spec is None:
        return []
    if not isinstance(spec, Mapping):
        raise FilterError(f"filter must be a dict of field -> condition, got {type(spec).__name__}")
    conditions: list[Condition] = []
    for field, cond in spec.items():
        if not isinstance(field, str) or not _FIELD_RE.match(field):
            raise FilterError(f"filter field name {field!r} is not a valid metadata field name")
        if isinstance(cond, Mapping):
            ops = set(cond)
            if ops == {"eq"}:
                conditions.append(Condition(field, "eq", _check_scalar(field, cond["eq"])))
            elif ops == {"in"}:
                conditions.append(_any_of(field, cond["in"]))
            elif ops and ops <= set(_RANGE_OPS):
                bounds: dict[str, float] = {}
                for op, bound in cond.items():
                    if isinstance(bound, bool) or not isinstance(bound, (int, float)) or not math.isfinite(bound):
                        raise FilterError(f"filter field {field!r}: range bound {op}={bound!r} must be a finite number")
                    bounds[op] = float(bound)
                conditions.append(Condition(field, "range", bounds))
            else:
                raise FilterError(
                    f"filter field {field!r}: unknown operators {sorted(ops)}; use eq, in, or gt/gte/lt/lte"
                )
        elif isinstance(cond, (list, tuple)):
            conditions.append(_any_of(field, cond))
        else:
            conditions.append(Condition(field, "eq", _check_scalar(field, cond)))
    return conditions


def _any_of(field: str, values: Any) -> Condition:
    if not isinstance(values, (list, tuple)) or not values:
        raise FilterError(f"filter field {field!r}: 'in' needs a non-empty list")
    return Condition(field, "in", tuple(_check_scalar(field, v) for v in values))


def check_fields(conditions: list[Condition], known_fields: Mapping[str, str] | None) -> None:
    """Refuse conditions on metadata fields the collection has never stored.

    A typo in a filter field would otherwise silently return nothing.
    """
    if known_fields is None:
        return
    for c in conditions:
        if c.field not in known_fields:
            known = ", ".join(sorted(known_fields)) or "(none)"
            raise FilterError(f"filter field {c.field!r} is not a metadata field of this collection; known: {known}")
        _check_type(c, known_fields[c.field])


def _check_type(c: Condition, kind: str) -> None:
    """Refuse a condition that can never match the field's recorded type (it would silently match nothing)."""
    if kind == DOTTED_KEY:
        raise FilterError(f"filter field {c.field!r} is {kind}; rename the metadata key to filter on it")
    if c.op == "range":
        if kind != "number":
            raise FilterError(f"filter field {c.field!r} holds {kind} values; a range needs a number field")
        return
    expected = {"number": int, "keyword": str, "bool": bool}.get(kind)
    if expected is None:  # lists and other values: any scalar may match an element
        return
    values = c.value if c.op == "in" else (c.value,)
    for v in values:
        wrong = not isinstance(v, expected) or (expected is int and isinstance(v, bool))
        if wrong:
            raise FilterError(
                f"filter field {c.field!r} holds {kind} values; {v!r} is a {type(v).__name__} and would match nothing"
            )


def metadata_field_types(metadata: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Flatten a metadata dict into {dotted.field: type name}; used to learn the filterable schema."""
    out: dict[str, str] = {}
    for key, value in metadata.items():
        name = f"{prefix}{key}"
        if "." in str(key):
            out[name] = DOTTED_KEY
        elif isinstance(value, Mapping):
            out.update(metadata_field_types(value, prefix=f"{name}."))
        elif isinstance(value, bool):
            out[name] = "bool"
        elif isinstance(value, (int, float)):
            out[name] = "number"
        elif isinstance(value, str):
            out[name] = "keyword"
        elif isinstance(value, (list, tuple)):
            out[name] = "list"
        else:
            out[name] = "other"
    return out


def matches(conditions: list[Condition], metadata: Mapping[str, Any]) -> bool:
    """Evaluate conditions in Python: the reference semantics every backend must agree with."""
    for c in conditions:
        value: Any = metadata
        for part in c.field.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
        values = value if isinstance(value, list) else [value]
        if c.op == "eq":
            ok = any(v == c.value and type(v) is type(c.value) for v in values)
        elif c.op == "in":
            ok = any(v in c.value for v in values if v is not None)
        else:
            nums = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
            ok = any(_in_range(v, c.value) for v in nums)
        if not ok:
            return False
    return True


def _in_range(v: float, b: Mapping[str, float]) -> bool:
    return (
        ("gt" not in b or v > b["gt"])
        and ("gte" not in b or v >= b["gte"])
        and ("lt" not in b or v < b["lt"])
        and ("lte" not in b or v <= b["lte"])
    )
