"""Pydantic validation errors in plain words for config authors ("expected a string", "unknown key `primry`")."""

from __future__ import annotations

import re
import types
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic_core import ErrorDetails

from bot.config.schema import Config, ModelChain

KeyPath = tuple[str | int, ...]


_SIMPLE: dict[str, str] = {
    "string_type": "expected a string",
    "int_type": "expected a whole number",
    "int_parsing": "expected a whole number",
    "int_from_float": "expected a whole number",
    "float_type": "expected a number",
    "float_parsing": "expected a number",
    "finite_number": "expected a finite number",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
    "dict_type": "expected an object { … }",
    "tuple_type": "expected a list [ … ]",
    "list_type": "expected a list [ … ]",
}
_PATTERNS: dict[str, str] = {
    r"^[A-Za-z0-9][A-Za-z0-9_-]*$": "expected letters, digits, '-' or '_', starting with a letter or digit",
}


def describe(error: ErrorDetails, root: type[BaseModel] = Config) -> str:
    """One pydantic error in plain words: what the config should have held at that key (``root``: the schema
    that was validated, whose keys the hint for an unknown key suggests)."""
    kind, ctx, loc = error["type"], error.get("ctx", {}), tuple(error["loc"])
    bounds = {
        "greater_than": "greater than {gt}",
        "greater_than_equal": "at least {ge}",
        "less_than": "less than {lt}",
        "less_than_equal": "at most {le}",
    }
    if kind in _SIMPLE:
        return _SIMPLE[kind]
    if kind in bounds:
        return "expected a number " + bounds[kind].format(**ctx)
    if kind == "literal_error":
        return "expected one of: " + ", ".join(re.findall(r"'([^']*)'", str(ctx.get("expected", ""))))
    if kind == "extra_forbidden":
        return _unknown_key(loc, root)
    if kind == "missing":
        return f"missing required key `{loc[-1]}`"
    if kind == "model_type":
        if ctx.get("class_name") == ModelChain.__name__:
            return 'expected a model "provider/model" or an object { primary, fallbacks }'
        return "expected an object { … }"
    if kind == "string_too_short":
        return (
            "expected a non-empty string"
            if ctx.get("min_length") == 1
            else f"expected at least {ctx['min_length']} characters"
        )
    if kind == "string_too_long":
        return f"expected at most {ctx['max_length']} characters"
    if kind == "string_pattern_mismatch":
        return _PATTERNS.get(str(ctx["pattern"]), f"expected text matching {ctx['pattern']}")
    if kind == "value_error":
        return str(error["msg"]).removeprefix("Value error, ")
    return str(error["msg"])


def _unknown_key(loc: KeyPath, root: type[BaseModel]) -> str:
    key = str(loc[-1])
    model = _model_at(loc[:-1], root)
    if model is None:
        return f"unknown key `{key}`"
    names = [info.alias or name for name, info in model.model_fields.items()]
    import difflib  # noqa: PLC0415 - suggestions only for a mistake

    close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
    hint = f"did you mean `{close[0]}`?" if close else "allowed here: " + ", ".join(names)
    return f"unknown key `{key}` ({hint})"


def _model_at(loc: KeyPath, root: type[BaseModel]) -> type[BaseModel] | None:
    """The schema class that validates the object at ``loc`` (used to suggest the key that was meant)."""
    current: Any = root
    for part in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            fields = {info.alias or name: info for name, info in current.model_fields.items()}
            if not isinstance(part, str) or part not in fields:
                return None
            current = fields[part].annotation
        elif get_origin(current) is dict:
            current = get_args(current)[1]
        elif get_origin(current) in (tuple, list):
            current = get_args(current)[0]
        else:
            return None
    current = _unwrap(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(annotation: Any) -> Any:
    """Strip ``Annotated[…]`` and ``X | None`` down to the type that holds the keys."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            rest = [arg for arg in get_args(annotation) if arg is not type(None)]
            if len(rest) != 1:
                return annotation
            annotation = rest[0]
        else:
            return annotation
