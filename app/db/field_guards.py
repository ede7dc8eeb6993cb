"""Which BSON types an indexed field's schema type holds, the filter of the
documents whose field holds another type, and the state an engine reports of the
type guard of one indexed field (`EngineAdapter.field_guards`).

A document whose indexed field holds another type than the schema says (written
before a type change, or by a path that does not validate) is legal — MongoDB
compares it by type bracket — but on the embedded engine it holds the field's
typed index off (`app.engine.planner`, "the type guard"), so its reads go the
slow way until the document is fixed. The guard lets every number type pass for
a numeric field (MongoDB compares numbers as one), while a *violation* to list or
convert is any value of another type than the declared one, null and missing
aside: an int in a float field does not hold the guard off, but converts
losslessly and is listed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

GuardState = Literal["building", "valid", "off"]

#: `$type` names each schema field type holds exactly (`any`: every type).
TYPES_OF_SCHEMA_TYPE: dict[str, tuple[str, ...]] = {
    "string": ("string",),
    "int": ("int", "long"),
    "float": ("double",),
    "number": ("int", "long", "double"),
    "bool": ("bool",),
    "date": ("date",),
    "id": ("objectId",),
    "object": ("object",),
    "array": ("array",),
}


@dataclass(frozen=True)
class FieldGuard:
    """The type guard of one indexed field, as the engine sees it."""

    #: `building`: its typed index is not serving yet; `valid`: it serves (or the
    #: engine's own index does); `off`: reads of the field go the slow way.
    state: GuardState
    #: Why it is not valid (None when it is).
    reason: str | None = None
    #: Documents holding a type the guard does not let pass (None: not counted).
    violations: int | None = None


def other_type_filter(field: str, types: tuple[str, ...]) -> dict[str, Any]:
    """Documents whose `field` holds a value of none of `types`, null and missing
    aside. An array is a value of its own (`$type` alone would match an array by
    its elements, as MongoDB does)."""
    present_other = {field: {"$exists": True, "$not": {"$type": [*types, "null"]}}}
    if "array" in types:
        return present_other
    return {"$or": [{field: {"$type": "array"}}, present_other]}


def violation_filter(field: str, schema_type: str) -> dict[str, Any] | None:
    """Documents whose `field` holds another type than `schema_type` (None: every
    type is that type's, `any`)."""
    types = TYPES_OF_SCHEMA_TYPE.get(schema_type)
    return None if types is None else other_type_filter(field, types)
