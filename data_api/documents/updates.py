"""The update compiler: `update_data` of crud.md → a driver update document.

`update_data` is either a plain object (treated as `$set` of its fields) or an
object of update operators from the allow-list below. Every path is checked
(field-name rules, `_id` immutable, `strict` schemas allow only their fields)
and every value is converted by the collection schema like an inserted value, so
that a `date` field stays a date and an `int` field stays an integer:
- `$set`, `$min`, `$max` convert the value like the field (enum and
  required-not-null included); `$unset` of a required field is refused;
- `$inc`, `$mul` need a number and a numeric (or untyped) field, and an integral
  number for an `int` field;
- `$push`, `$addToSet`, `$pull` convert elements by the array's `items` type;
  `$pull` conditions go through the filter compiler (same operator allow-list);
- `$rename` keeps required fields and, between typed fields, the type;
- `$currentDate` writes a date (or a timestamp into an untyped field); a date is
  pinned to the request's time (`pin_current_date`: `$set` of one UTC time in
  milliseconds) so that the update can be replayed exactly by an undo.
Two operators on the same or overlapping paths are refused (MongoDB would too,
but with a less clear message). Problems are collected, then answered as one
422 listing each with its `loc`; an operator outside the allow-list is 400
`INVALID_UPDATE` naming it.

Decided where crud.md is silent: positional paths (`tags.$`, `tags.$[]`) are not
accepted (their field-name rules forbid `$`); `$push` modifiers `$position`,
`$slice` and `$sort`, and `$pull` with a condition (`{"$in": [...]}`), need
MongoDB — the embedded engine silently ignores the modifiers and takes the
condition for a value, so there they are 501 rather than a wrong result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from app.errors import EngineUnsupported
from app.kit import field_name_problem
from app.schema import (
    CompiledSchema,
    InvalidFilter,
    compile_condition,
    compile_filter,
    convert_untyped_value,
)
from data_api.documents.errors import DocumentsInvalid, InvalidUpdate

UPDATE_OPERATORS = (
    "$set", "$unset", "$inc", "$mul", "$min", "$max", "$push", "$pull",
    "$addToSet", "$pop", "$rename", "$currentDate",
)  # fmt: skip
NUMERIC_TYPES = {"int", "float", "any", None}
DATE_KINDS = ("date", "timestamp")
PUSH_MODIFIERS = {"$each", "$position", "$slice", "$sort"}
MAX_UPDATE_PATHS = 1000


@dataclass
class CompiledUpdate:
    """The driver update and the top-level fields it writes."""

    document: dict[str, Any]
    fields: set[str] = field(default_factory=set)

    def with_defaults(self, defaults: dict[str, Any], exclude: set[str]) -> dict[str, Any]:
        """The update for an upsert: schema defaults the update and filter leave unset
        are written on insert only."""
        missing = {
            name: value
            for name, value in defaults.items()
            if name not in self.fields and name not in exclude
        }
        if not missing:
            return self.document
        return {**self.document, "$setOnInsert": missing}


def pin_current_date(document: dict[str, Any]) -> dict[str, Any]:
    """The update with `$currentDate` dates turned into a `$set` of now (UTC, in
    milliseconds, as BSON stores it); timestamps stay with the server."""
    current = document.get("$currentDate")
    if not current:
        return document
    clock = datetime.now(UTC)
    now = clock.replace(microsecond=clock.microsecond // 1000 * 1000)
    dates = {
        path: now for path, kind in current.items() if kind is True or kind == {"$type": "date"}
    }
    if not dates:
        return document
    pinned = {key: value for key, value in document.items() if key != "$currentDate"}
    rest = {path: kind for path, kind in current.items() if path not in dates}
    if rest:
        pinned["$currentDate"] = rest
    pinned["$set"] = {**document.get("$set", {}), **dates}
    return pinned


class _Problems:
    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def add(self, loc: list[str | int], msg: str, kind: str = "update") -> None:
        self.items.append({"loc": ["update_data", *loc], "msg": msg, "type": kind})


def compile_update(
    update_data: Any, schema: CompiledSchema, *, engine_modifiers: bool = True
) -> CompiledUpdate:
    """Raises `InvalidUpdate` (400), `DocumentsInvalid` (422), `EngineUnsupported`."""
    if not isinstance(update_data, dict) or not update_data:
        raise DocumentsInvalid(
            [{"loc": ["update_data"], "msg": "expected a non-empty object", "type": "update"}],
            what="update",
        )
    operator_keys = [key for key in update_data if isinstance(key, str) and key.startswith("$")]
    if not operator_keys:
        update_data = {"$set": update_data}
    elif len(operator_keys) != len(update_data):
        raise DocumentsInvalid(
            [
                {
                    "loc": ["update_data"],
                    "msg": "either fields to set or update operators, not both",
                    "type": "update",
                }
            ],
            what="update",
        )
    compiler = _UpdateCompiler(schema, engine_modifiers)
    document: dict[str, Any] = {}
    for operator, arguments in update_data.items():
        if operator not in UPDATE_OPERATORS:
            raise InvalidUpdate(
                f"Update operator {operator} is not allowed; use one of "
                f"{', '.join(UPDATE_OPERATORS)}.",
                operator=operator,
            )
        if not isinstance(arguments, dict) or not arguments:
            compiler.problems.add([operator], "expected a non-empty object of field paths")
            continue
        document[operator] = compiler.operator(operator, arguments)
    compiler.check_overlaps()
    if compiler.problems.items:
        raise DocumentsInvalid(compiler.problems.items, what="update")
    return CompiledUpdate(document=document, fields=compiler.top_fields)


class _UpdateCompiler:
    def __init__(self, schema: CompiledSchema, engine_modifiers: bool) -> None:
        self.schema = schema
        self.engine_modifiers = engine_modifiers
        self.problems = _Problems()
        self.paths: list[tuple[str, str]] = []  # (operator, path)
        self.top_fields: set[str] = set()

    def operator(self, operator: str, arguments: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for path, value in arguments.items():
            if len(self.paths) >= MAX_UPDATE_PATHS:
                self.problems.add([operator], f"at most {MAX_UPDATE_PATHS} paths per update")
                break
            if not self._check_path(operator, path):
                continue
            try:
                out[path] = getattr(self, "_" + operator[1:].lower())(path, value)
            except ValueError as exc:
                self.problems.add([operator, path], str(exc), "type_error")
            except InvalidFilter as exc:
                self.problems.add([operator, path], exc.message, "condition")
        return out

    # --------------------------------------------------------------- paths

    def _check_path(self, operator: str, path: Any) -> bool:
        if not isinstance(path, str) or not path:
            self.problems.add([operator], "field paths must be non-empty strings")
            return False
        for part in path.split("."):
            problem = field_name_problem(part) if part else "empty path segment"
            if problem is not None:
                self.problems.add([operator, path], f"invalid field path: {problem}")
                return False
        top = path.split(".")[0]
        if top == "_id":
            self.problems.add([operator, path], "_id cannot be changed by an update", "immutable")
            return False
        if self.schema.strict and self.schema.field_type(top) is None:
            self.problems.add(
                [operator, path], "field not allowed: the collection's schema is strict", "strict"
            )
            return False
        self.paths.append((operator, path))
        self.top_fields.add(top)
        return True

    def check_overlaps(self) -> None:
        seen: list[tuple[str, str]] = []
        for operator, path in self.paths:
            for other_operator, other in seen:
                if path == other or path.startswith(other + ".") or other.startswith(path + "."):
                    self.problems.add(
                        [operator, path],
                        f"conflicts with {other_operator} on '{other}': one path per update",
                        "conflict",
                    )
            seen.append((operator, path))

    def _where(self, path: str) -> tuple[str, str | None, list[str]]:
        """(top-level field, its declared type, the rest of the path)."""
        top, *rest = path.split(".")
        return top, self.schema.field_type(top), rest

    # ---------------------------------------------------------- conversions

    def _value_at(self, path: str, value: Any) -> Any:
        """A value written at `path` ($set, $min, $max), converted by the schema."""
        top, kind, rest = self._where(path)
        if not rest:
            return self.schema.convert_field_value(top, value)
        if kind in (None, "object", "any"):
            return convert_untyped_value(value)
        if kind == "array" and len(rest) == 1 and rest[0].isdigit():
            return self.schema.convert_element(top, value)
        if kind == "array":
            return convert_untyped_value(value)
        raise ValueError(f"'{top}' is a {kind} field; it has no sub-fields")

    def _array_at(self, path: str) -> tuple[str, bool]:
        """(top-level field, whether elements are typed by the schema) of an array path."""
        top, kind, rest = self._where(path)
        if rest or kind in (None, "any"):
            if kind not in (None, "any", "object", "array"):
                raise ValueError(f"'{top}' is a {kind} field, not an array")
            return top, False
        if kind != "array":
            raise ValueError(f"'{top}' is a {kind} field, not an array")
        return top, self.schema.has_element_type(top)

    def _element(self, path: str, value: Any) -> Any:
        top, typed = self._array_at(path)
        return self.schema.convert_element(top, value) if typed else convert_untyped_value(value)

    # ------------------------------------------------------------ operators

    def _set(self, path: str, value: Any) -> Any:
        return self._value_at(path, value)

    def _min(self, path: str, value: Any) -> Any:
        return self._value_at(path, value)

    def _max(self, path: str, value: Any) -> Any:
        return self._value_at(path, value)

    def _unset(self, path: str, value: Any) -> Any:
        top, _, rest = self._where(path)
        if not rest and self.schema.is_required(top):
            raise ValueError(f"'{top}' is required and cannot be removed")
        return ""

    def _inc(self, path: str, value: Any) -> Any:
        return self._number(path, value)

    def _mul(self, path: str, value: Any) -> Any:
        return self._number(path, value)

    def _number(self, path: str, value: Any) -> Any:
        top, kind, rest = self._where(path)
        converted = convert_untyped_value(value)
        if isinstance(converted, bool) or not isinstance(converted, int | float):
            raise ValueError("expected a number")
        if rest:
            if kind not in (None, "object", "any", "array"):
                raise ValueError(f"'{top}' is a {kind} field; it has no sub-fields")
            return converted
        if kind not in NUMERIC_TYPES:
            raise ValueError(f"'{top}' is a {kind} field, not a number")
        if kind == "int":
            if isinstance(converted, float) and not converted.is_integer():
                raise ValueError(f"'{top}' is an int field; the operand must be an integer")
            return int(converted)
        return converted

    def _push(self, path: str, value: Any) -> Any:
        if isinstance(value, dict) and "$each" in value:
            return self._each(path, value, PUSH_MODIFIERS)
        return self._element(path, value)

    def _addtoset(self, path: str, value: Any) -> Any:
        if isinstance(value, dict) and "$each" in value:
            return self._each(path, value, {"$each"})
        return self._element(path, value)

    def _each(self, path: str, value: dict[str, Any], allowed: set[str]) -> dict[str, Any]:
        unknown = set(value) - allowed
        if unknown:
            raise ValueError(f"unsupported modifier {sorted(unknown)[0]}")
        items = value["$each"]
        if not isinstance(items, list):
            raise ValueError("$each needs an array")
        out: dict[str, Any] = {"$each": [self._element(path, item) for item in items]}
        modifiers = set(value) - {"$each"}
        if modifiers and not self.engine_modifiers:
            raise EngineUnsupported(
                f"$push modifier {sorted(modifiers)[0]} needs MongoDB: the embedded engine "
                "ignores it."
            )
        for modifier in ("$position", "$slice"):
            if modifier in value:
                if type(value[modifier]) is not int:
                    raise ValueError(f"{modifier} needs an integer")
                out[modifier] = value[modifier]
        if "$sort" in value:
            out["$sort"] = self._push_sort(value["$sort"])
        return out

    @staticmethod
    def _push_sort(spec: Any) -> Any:
        if spec in (1, -1) and type(spec) is int:
            return spec
        if (
            isinstance(spec, dict)
            and spec
            and all(
                isinstance(key, str) and v in (1, -1) and type(v) is int for key, v in spec.items()
            )
        ):
            return spec
        raise ValueError("$sort needs 1, -1 or an object of field: 1|-1")

    def _pull(self, path: str, value: Any) -> Any:
        top, typed = self._array_at(path)
        if isinstance(value, dict) and value:
            first = next(iter(value))
            if isinstance(first, str) and first.startswith("$"):
                if not self.engine_modifiers:
                    raise EngineUnsupported(
                        "$pull with a condition needs MongoDB: the embedded engine would treat "
                        "the condition as a value and remove nothing. Pull values instead."
                    )
                schema = self.schema if typed else None
                return compile_condition(top if typed else path, value, schema)
            return compile_filter(value, None)  # a query on the fields of object elements
        return self.schema.convert_element(top, value) if typed else convert_untyped_value(value)

    def _pop(self, path: str, value: Any) -> Any:
        self._array_at(path)
        if value not in (1, -1) or type(value) is not int:
            raise ValueError("$pop needs 1 (last) or -1 (first)")
        return value

    def _rename(self, path: str, value: Any) -> Any:
        source_top, source_kind, _ = self._where(path)
        if self.schema.is_required(source_top) and "." not in path:
            raise ValueError(f"'{source_top}' is required and cannot be renamed away")
        if not self._check_path("$rename", value):
            return value  # the problem is recorded
        target_top, target_kind, target_rest = self._where(value)
        typed_target = not target_rest and target_kind not in (None, "any")
        if typed_target and (source_kind != target_kind or "." in path):
            raise ValueError(
                f"cannot rename into '{target_top}' ({target_kind}): the source is not a "
                f"{target_kind} field"
            )
        return value

    def _currentdate(self, path: str, value: Any) -> Any:
        top, kind, rest = self._where(path)
        if value is True:
            wanted = "date"
        elif (
            isinstance(value, dict)
            and value.get("$type") in ("date", "timestamp")
            and len(value) == 1
        ):
            wanted = value["$type"]
        else:
            raise ValueError('$currentDate needs true or {"$type": "date" | "timestamp"}')
        if rest and kind not in (None, "object", "any"):
            raise ValueError(f"'{top}' is a {kind} field; it has no sub-fields")
        if not rest and kind not in (None, "any", wanted):
            raise ValueError(f"'{top}' is a {kind} field, not a {wanted}")
        return value
