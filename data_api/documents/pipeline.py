"""The aggregation compiler of `POST /api/crud/aggregate` (crud.md).

A pipeline is a list of single-key stage objects from the allow-list `STAGES`.
Every stage is scanned to any depth — including the sub-pipelines of `$facet` —
and a stage or operator outside the rules is 400 `INVALID_PIPELINE` naming it
and where it is: no `$lookup`/`$graphLookup`/`$unionWith` (other databases), no
`$out`/`$merge` (writes), no `$function`/`$accumulator`/`$where` (server-side
code), no `$jsonSchema`/`$text`. `$regexMatch`/`$regexFind`/`$regexFindAll` need
a literal `regex` that passes `app.kit.regex_limits` (a pattern read from documents
could be anything); `$range` needs literal integers and makes at most
`MAX_RANGE` elements. `$match` stages go through the filter compiler
(same operator allow-list as `filters`); until the first stage that reshapes
documents, their values are converted by the collection schema, so dates
compare as dates.

Engine gaps (`Capabilities.missing_stages`; FerretDB 1.24 lacks `$sortByCount`,
`$bucket` and `$facet`): a missing `$sortByCount` is rewritten into the `$group`
+ `$sort` it is defined as; any other missing stage is 501 `ENGINE_UNSUPPORTED`.
Anything else the engine lacks (an expression operator, an accumulator) comes
back from it as NotImplemented and is 501 as well.
"""

from __future__ import annotations

from typing import Any

from app.db import Capabilities
from app.errors import EngineUnsupported
from app.kit import field_name_problem, regex_problem
from app.schema import CompiledSchema, InvalidFilter, compile_filter
from data_api.documents.errors import InvalidPipeline

STAGES = (
    "$match", "$group", "$sort", "$limit", "$skip", "$project", "$unwind", "$count",
    "$addFields", "$set", "$unset", "$sortByCount", "$bucket", "$facet",
)  # fmt: skip
FORBIDDEN = {
    "$function", "$accumulator", "$where", "$jsonSchema", "$text", "$lookup",
    "$graphLookup", "$unionWith", "$out", "$merge", "$documents",
}  # fmt: skip
#: Stages after which documents still have the collection's shape.
SHAPE_KEEPING = {"$match", "$sort", "$limit", "$skip"}
MAX_STAGES = 100
MAX_DEPTH = 50
REGEX_EXPRESSIONS = {"$regexMatch", "$regexFind", "$regexFindAll"}
MAX_RANGE = 100_000

Loc = list[str | int]


def compile_pipeline(
    pipeline: Any, schema: CompiledSchema, *, capabilities: Capabilities
) -> list[dict[str, Any]]:
    """A safe driver pipeline; raises `InvalidPipeline` or `EngineUnsupported`."""
    compiled = _Compiler(capabilities).pipeline(pipeline, schema, loc=[], nested=False)
    return compiled


class _Compiler:
    def __init__(self, capabilities: Capabilities) -> None:
        self.capabilities = capabilities
        self.lacking = capabilities.missing_stages - {"$sortByCount"}
        self.missing: tuple[str, Loc] | None = None

    def pipeline(
        self, pipeline: Any, schema: CompiledSchema | None, *, loc: Loc, nested: bool
    ) -> list[dict[str, Any]]:
        if not isinstance(pipeline, list) or not pipeline:
            raise InvalidPipeline("A pipeline must be a non-empty array of stages.", loc=loc)
        if len(pipeline) > MAX_STAGES:
            raise InvalidPipeline(f"At most {MAX_STAGES} stages are allowed.", loc=loc)
        out: list[dict[str, Any]] = []
        for position, stage in enumerate(pipeline):
            where = [*loc, position]
            if not isinstance(stage, dict) or len(stage) != 1:
                raise InvalidPipeline(
                    f"Stage {position} must be an object with exactly one stage name.", loc=where
                )
            name, argument = next(iter(stage.items()))
            if name not in STAGES:
                raise InvalidPipeline(
                    f"Stage {name} is not allowed; allowed stages: {', '.join(STAGES)}.",
                    loc=[*where, name],
                )
            if nested and name == "$facet":
                raise InvalidPipeline("$facet cannot be nested in $facet.", loc=[*where, name])
            out.extend(self.stage(name, argument, schema, [*where, name]))
            if name not in SHAPE_KEEPING:
                schema = None
        if not nested and self.missing is not None:
            stage, where = self.missing
            raise EngineUnsupported(
                f"Stage {stage} (at pipeline{''.join(f'[{part!r}]' for part in where)}) is not "
                f"available on the {self.capabilities.short_label} engine; run Quarry on MongoDB "
                "for it."
            )
        return out

    def stage(
        self, name: str, argument: Any, schema: CompiledSchema | None, loc: Loc
    ) -> list[dict[str, Any]]:
        if name == "$match":
            try:
                return [{"$match": compile_filter(argument, schema)}]
            except InvalidFilter as exc:
                raise InvalidPipeline(exc.message, loc=loc) from None
        if name == "$facet":
            return [{"$facet": self._facet(argument, schema, loc)}]
        self._scan(argument, loc, depth=1)
        if name in ("$limit", "$skip"):
            minimum = 1 if name == "$limit" else 0
            if type(argument) is not int or argument < minimum:
                raise InvalidPipeline(f"{name} needs an integer ≥ {minimum}.", loc=loc)
        if name == "$sort":
            self._sort(argument, loc)
        if name in self.lacking and self.missing is None:
            self.missing = (name, loc[:-1])
        if name == "$sortByCount" and name in self.capabilities.missing_stages:
            return [{"$group": {"_id": argument, "count": {"$sum": 1}}}, {"$sort": {"count": -1}}]
        return [{name: argument}]

    def _facet(self, argument: Any, schema: CompiledSchema | None, loc: Loc) -> dict[str, Any]:
        if not isinstance(argument, dict) or not argument:
            raise InvalidPipeline("$facet needs an object of name: pipeline.", loc=loc)
        out = {}
        for name, sub_pipeline in argument.items():
            problem = field_name_problem(name) if isinstance(name, str) else "not a string"
            if problem is not None:
                raise InvalidPipeline(f"Invalid $facet output name '{name}': {problem}.", loc=loc)
            out[name] = self.pipeline(sub_pipeline, schema, loc=[*loc, name], nested=True)
        if "$facet" in self.lacking and self.missing is None:
            self.missing = ("$facet", loc[:-1])
        return out

    @staticmethod
    def _sort(argument: Any, loc: Loc) -> None:
        if not isinstance(argument, dict) or not argument:
            raise InvalidPipeline("$sort needs an object of field: 1 | -1.", loc=loc)
        for field, direction in argument.items():
            if type(direction) is not int or direction not in (1, -1):
                raise InvalidPipeline(f"$sort direction of '{field}' must be 1 or -1.", loc=loc)

    @staticmethod
    def _regex_expression(name: str, argument: Any, loc: Loc) -> None:
        if not isinstance(argument, dict) or not isinstance(argument.get("regex"), str):
            raise InvalidPipeline(f"{name} needs a literal string regex.", loc=loc)
        pattern, options = argument["regex"], argument.get("options", "")
        if pattern.startswith("$"):
            raise InvalidPipeline(
                f"{name} needs a literal regex, not a field path or variable.", loc=loc
            )
        problem = regex_problem(pattern, options)
        if problem is not None:
            raise InvalidPipeline(f"The regex of {name} {problem}.", loc=loc)

    @staticmethod
    def _range(argument: Any, loc: Loc) -> None:
        literal = (
            isinstance(argument, list)
            and len(argument) in (2, 3)
            and all(type(item) is int for item in argument)
        )
        if not literal:
            raise InvalidPipeline("$range needs literal integers [start, end, step?].", loc=loc)
        start, end, step = (*argument, 1)[:3]
        if step == 0 or (end - start) // step > MAX_RANGE:
            raise InvalidPipeline(f"$range makes at most {MAX_RANGE:,} numbers.", loc=loc)

    def _scan(self, value: Any, loc: Loc, *, depth: int) -> None:
        """Refuse forbidden operators anywhere inside a stage's argument."""
        if depth > MAX_DEPTH:
            raise InvalidPipeline(f"A stage is nested deeper than {MAX_DEPTH} levels.", loc=loc)
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    raise InvalidPipeline("Object keys must be strings.", loc=loc)
                if key in FORBIDDEN:
                    raise InvalidPipeline(
                        f"Operator {key} is not allowed in pipelines.", loc=[*loc, key]
                    )
                if key in REGEX_EXPRESSIONS:
                    self._regex_expression(key, item, [*loc, key])
                if key == "$range":
                    self._range(item, [*loc, key])
                self._scan(item, [*loc, key], depth=depth + 1)
        elif isinstance(value, list):
            for position, item in enumerate(value):
                self._scan(item, [*loc, position], depth=depth + 1)
