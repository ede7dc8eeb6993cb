"""User-supplied MongoDB filters, made safe: parse, allow-list, limit, convert.

Every filter a client sends (export now, CRUD reads/updates/deletes next) goes
through `compile_filter`, which returns a new driver filter or raises 400
`INVALID_FILTER` naming the problem:
- query operators outside the allow-list of crud.md (`$where`, `$expr`,
  `$function`, `$accumulator`, `$jsonSchema`, `$text`, any unknown `$` key) are
  refused by name — at any depth, including inside `$elemMatch` and `$not`;
- every regular expression, however it is spelled, goes through
  `app.kit.regex_limits` (length, options, nested quantifiers); nesting deeper than
  `MAX_DEPTH` is refused;
- values are converted by the collection schema like written values (a `date`
  field compares dates, an `id` field ObjectIds, `_id` strings match ObjectIds),
  and Extended JSON wrappers are honoured everywhere.
"""

from __future__ import annotations

import json
from typing import Any

from app.errors import ErrorCode, QuarryError
from app.kit import field_name_problem, regex_problem
from app.schema.fields import CompiledSchema, convert_id, convert_untyped_value

MAX_DEPTH = 20
MAX_FILTER_CHARS = 1024 * 1024

LOGICAL = {"$and", "$or", "$nor"}
COMPARISON = {"$eq", "$ne", "$gt", "$gte", "$lt", "$lte"}
LISTS = {"$in", "$nin", "$all"}
FIELD_OPERATORS = (
    COMPARISON
    | LISTS
    | {
        "$exists",
        "$type",
        "$regex",
        "$options",
        "$not",
        "$elemMatch",
        "$size",
        "$mod",
    }
)
ALLOWED = LOGICAL | FIELD_OPERATORS
_BSON_TYPE_ALIASES = {
    "double", "string", "object", "array", "binData", "objectId", "bool", "date", "null",
    "regex", "int", "timestamp", "long", "decimal", "number",
}  # fmt: skip


class InvalidFilter(QuarryError):
    status_code = 400
    error_code = ErrorCode.INVALID_FILTER


def parse_filter_json(text: str | None, *, what: str = "filters") -> dict[str, Any]:
    """The JSON object in a query parameter; an empty value is the empty filter."""
    if text is None or not text.strip():
        return {}
    if len(text) > MAX_FILTER_CHARS:
        raise InvalidFilter(f"The {what} parameter is longer than {MAX_FILTER_CHARS} characters.")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidFilter(
            f"The {what} parameter is not valid JSON at position {exc.pos} "
            f"(line {exc.lineno}, column {exc.colno}): {exc.msg}."
        ) from None
    if not isinstance(value, dict):
        raise InvalidFilter(f"The {what} parameter must be a JSON object.")
    return value


def compile_filter(query: Any, schema: CompiledSchema | None) -> dict[str, Any]:
    """A safe driver filter for `query` (see the module docstring); raises `InvalidFilter`."""
    return _FilterCompiler(schema).query(query, depth=1)


class _FilterCompiler:
    def __init__(self, schema: CompiledSchema | None) -> None:
        self.schema = schema

    def query(self, query: Any, *, depth: int, path_prefix: str = "") -> dict[str, Any]:
        self._depth(depth)
        if not isinstance(query, dict):
            raise InvalidFilter("A filter must be a JSON object of field conditions.")
        out: dict[str, Any] = {}
        for key, value in query.items():
            if key.startswith("$"):
                out[key] = self._logical(key, value, depth)
            else:
                self._check_path(key)
                out[key] = self._condition(path_prefix + key, value, depth + 1)
        return out

    def _logical(self, operator: str, value: Any, depth: int) -> list[dict[str, Any]]:
        if operator not in LOGICAL:
            raise self._refused(operator)
        if not isinstance(value, list) or not value:
            raise InvalidFilter(f"{operator} needs a non-empty array of filters.")
        return [self.query(item, depth=depth + 1) for item in value]

    def _condition(self, path: str, value: Any, depth: int) -> Any:
        self._depth(depth)
        if isinstance(value, dict) and value and next(iter(value)).startswith("$"):
            converted = self._wrapper(path, value)
            if converted is not None:
                return converted
            return {op: self._operator(path, op, arg, depth, value) for op, arg in value.items()}
        return self._value(path, value)

    def _wrapper(self, path: str, value: dict[str, Any]) -> Any:
        first = next(iter(value))
        if first in ALLOWED or len(value) > 2:
            return None
        if first in {"$oid", "$date", "$numberLong", "$numberInt", "$numberDouble",
                     "$numberDecimal", "$binary", "$timestamp", "$regularExpression"}:  # fmt: skip
            return self._value(path, value)
        raise self._refused(first)

    def _operator(self, path: str, op: str, arg: Any, depth: int, siblings: dict[str, Any]) -> Any:
        if op not in FIELD_OPERATORS:
            raise self._refused(op)
        if op in COMPARISON:
            return self._value(path, arg)
        if op in LISTS:
            if not isinstance(arg, list):
                raise InvalidFilter(f"{op} on '{path}' needs an array.")
            return [self._element(path, item, depth) for item in arg]
        if op == "$exists":
            if not isinstance(arg, bool | int):
                raise InvalidFilter(f"$exists on '{path}' needs true or false.")
            return bool(arg)
        if op == "$type":
            return self._type(path, arg)
        if op == "$regex":
            return self._regex(path, arg, siblings.get("$options", ""))
        if op == "$options":
            if not isinstance(arg, str) or set(arg) - set("imsx") or "$regex" not in siblings:
                raise InvalidFilter(f"$options on '{path}' needs $regex and only the flags imsx.")
            return arg
        if op == "$not":
            if isinstance(arg, dict) and arg and all(key.startswith("$") for key in arg):
                return self._condition(path, arg, depth + 1)
            raise InvalidFilter(f"$not on '{path}' needs an object of operators.")
        if op == "$elemMatch":
            return self._elem_match(path, arg, depth)
        if op == "$size":
            if type(arg) is not int or arg < 0:
                raise InvalidFilter(f"$size on '{path}' needs a non-negative integer.")
            return arg
        return self._mod(path, arg)

    def _elem_match(self, path: str, arg: Any, depth: int) -> dict[str, Any]:
        if not isinstance(arg, dict) or not arg:
            raise InvalidFilter(f"$elemMatch on '{path}' needs a non-empty object.")
        if next(iter(arg)).startswith("$") and next(iter(arg)) not in LOGICAL:
            element = _FilterCompiler(None)
            return {op: element._operator(path, op, v, depth + 1, arg) for op, v in arg.items()}
        return _FilterCompiler(None).query(arg, depth=depth + 1)

    @staticmethod
    def _mod(path: str, arg: Any) -> list[int]:
        if (
            not isinstance(arg, list)
            or len(arg) != 2
            or not all(type(item) is int for item in arg)
            or arg[0] == 0
        ):
            raise InvalidFilter(f"$mod on '{path}' needs [divisor, remainder], divisor not 0.")
        return arg

    @staticmethod
    def _type(path: str, arg: Any) -> Any:
        values = arg if isinstance(arg, list) else [arg]
        for item in values:
            if not ((type(item) is int and 1 <= item <= 19) or item in _BSON_TYPE_ALIASES):
                raise InvalidFilter(f"$type on '{path}' needs a BSON type name or number.")
        return arg

    @staticmethod
    def _regex(path: str, arg: Any, options: Any) -> str:
        if not isinstance(arg, str):
            raise InvalidFilter(f"$regex on '{path}' needs a string.")
        problem = regex_problem(arg, options if isinstance(options, str) else "")
        if problem is not None:
            raise InvalidFilter(f"$regex on '{path}' {problem}; refused.")
        return arg

    def _element(self, path: str, item: Any, depth: int) -> Any:
        if isinstance(item, dict) and item and next(iter(item)).startswith("$"):
            if next(iter(item)) == "$elemMatch":
                return {"$elemMatch": self._elem_match(path, item["$elemMatch"], depth + 1)}
            converted = self._wrapper(path, item)
            if converted is None:
                raise self._refused(next(iter(item)))
            return converted
        return self._value(path, item)

    def _value(self, path: str, value: Any) -> Any:
        try:
            if self.schema is not None and "." not in path:
                return self.schema.convert_filter_value(path, value)
            if path == "_id":
                return convert_id(value)
            return convert_untyped_value(value)
        except ValueError as exc:
            raise InvalidFilter(f"Invalid value for '{path}' in the filter: {exc}.") from None

    @staticmethod
    def _check_path(path: str) -> None:
        for part in path.split("."):
            problem = field_name_problem(part) if part else "empty path segment"
            if problem is not None:
                raise InvalidFilter(f"Invalid field path '{path}' in the filter: {problem}.")

    @staticmethod
    def _depth(depth: int) -> None:
        if depth > MAX_DEPTH:
            raise InvalidFilter(f"The filter is nested deeper than {MAX_DEPTH} levels; refused.")

    @staticmethod
    def _refused(operator: str) -> InvalidFilter:
        return InvalidFilter(
            f"Operator {operator} is not allowed in filters.",
            details=[
                {"loc": ["filters", operator], "msg": "operator not allowed", "type": "operator"}
            ],
        )


def compile_condition(path: str, condition: Any, schema: CompiledSchema | None) -> Any:
    """The condition on one field path (`{"$gt": 5}`, a value, ...), as in a filter;
    `$pull` uses it for the elements it removes. Raises `InvalidFilter`."""
    compiler = _FilterCompiler(schema)
    compiler._check_path(path)
    return compiler._condition(path, condition, depth=2)
