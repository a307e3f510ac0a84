"""Validating one meta.json, with messages that name the model, the version and the field.

The file is validated as JSON (strict mode on its JSON text), so what passes is what the file says:
"30" is not a number, 1.5 is not an integer, true is not 1. Schema versions are checked first: a
file newer than this code is refused by its version alone, not by the fields it renamed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from infersuite.modelmeta.base import SCHEMA_VERSION, ModelMeta
from infersuite.modelmeta.families import schema_for

MAX_PROBLEMS = 5  # a message lists this many fields, then counts the rest


class MetaError(ValueError):
    """A meta.json the schema refuses. Its message names no path, so a server may show it to callers."""

    def __init__(self, model: str, version: str | int, problems: Sequence[tuple[str, str]]):
        self.model, self.version, self.problems = model, str(version), list(problems)
        shown = "; ".join(f"field {field}: {why}" if field else why for field, why in self.problems[:MAX_PROBLEMS])
        more = len(self.problems) - MAX_PROBLEMS
        super().__init__(f"model {model!r} version {version}: meta.json {shown}"
                         + (f" (and {more} more)" if more > 0 else ""))

    @property
    def fields(self) -> list[str]:
        return [field for field, _ in self.problems]


def _check_version(raw: Mapping[str, Any], model: str, version: str | int) -> None:
    found = raw.get("schema_version", 1)
    if type(found) is not int or found < 1:
        raise MetaError(model, version, [("schema_version", f"{found!r} is not a schema version (1, 2, ...)")])
    if found > SCHEMA_VERSION:
        raise MetaError(model, version, [(
            "schema_version", f"{found} is newer than this infersuite reads (up to {SCHEMA_VERSION}); "
                              "serve it with the infersuite that exported it, or re-export it")])


def _field(loc: tuple[int | str, ...], raw: Any) -> str:
    """pydantic's loc as a path into the file: keys joined by dots, list positions in brackets.
    A loc entry that is no key of the data there is a union member's tag (e.g. 'list[...]'): dropped."""
    path, node = "", raw
    for part in loc:
        if isinstance(node, Mapping) and isinstance(part, str) and part in node:
            path, node = f"{path}.{part}" if path else part, node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            path, node = f"{path}[{part}]", node[part]
        elif isinstance(node, Mapping) and isinstance(part, str):
            return f"{path}.{part}" if path else part  # a missing key
    return path


def _problems(err: ValidationError, raw: Any) -> list[tuple[str, str]]:
    by_field: dict[str, list[str]] = {}
    for e in err.errors(include_url=False):
        why = e["msg"].removeprefix("Value error, ")
        if e["type"] != "missing" and isinstance(e.get("input"), str | int | float | bool | None):
            why += f" (got {json.dumps(e['input'])[:60]})"
        reasons = by_field.setdefault(_field(e["loc"], raw), [])
        if why not in reasons:
            reasons.append(why)
    return [(field, ", or ".join(reasons)) for field, reasons in by_field.items()]


def validate_meta(raw: Mapping[str, Any], *, model: str, version: str | int) -> ModelMeta:
    """The typed meta.json of one model version (its family's schema); MetaError when refused."""
    _check_version(raw, model, version)
    try:
        text = json.dumps(raw, allow_nan=False)
    except (TypeError, ValueError) as exc:  # numpy scalars, NaN: what json.dumps would not write
        raise MetaError(model, version, [("", f"is not JSON data: {exc}")]) from None
    try:
        return schema_for(raw).model_validate_json(text, strict=True)
    except ValidationError as err:
        raise MetaError(model, version, _problems(err, json.loads(text))) from None


def read_meta_json(path: Path, *, model: str, version: str | int) -> dict[str, Any]:
    """The JSON object in a meta.json file, not validated; MetaError for a file that is no JSON object."""
    try:
        raw = json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MetaError(model, version, [("", f"is not valid JSON: {exc}")]) from None
    if not isinstance(raw, dict):
        raise MetaError(model, version, [("", f"holds a JSON {type(raw).__name__}, not an object")])
    return raw


def read_meta(path: Path, *, model: str, version: str | int) -> ModelMeta:
    """A meta.json file, validated."""
    return validate_meta(read_meta_json(path, model=model, version=version), model=model, version=version)
