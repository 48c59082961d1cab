"""YAML loading that remembers where every value came from, for one-line `file:line: field: problem` errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ..errors import ConfigError

Loc = tuple  # path of keys / indexes from the document root


class LineMap(dict):
    """(key, key, index, ...) -> 1-based line number in the source file."""

    def line_of(self, loc: Loc) -> int | None:
        loc = tuple(loc)
        while loc:
            if loc in self:
                return self[loc]
            loc = loc[:-1]
        return self.get((), None)


def _build(loader: yaml.SafeLoader, node: yaml.Node, loc: Loc, lines: LineMap, source: str) -> Any:
    lines[loc] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)
        out: dict = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, (str, int)):
                raise ConfigError(f"{source}:{key_node.start_mark.line + 1}: {dotted(loc) or '<top>'}: "
                                  f"keys must be names, not {type(key).__name__}")
            if key in out:
                raise ConfigError(f"{source}:{key_node.start_mark.line + 1}: {dotted(loc + (key,))}: "
                                  f"duplicate key; each key may appear once")
            out[key] = _build(loader, value_node, loc + (key,), lines, source)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(loader, item, loc + (i,), lines, source) for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


def load_yaml(path: Path) -> tuple[Any, LineMap]:
    source = str(path)
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise ConfigError(f"{source}: no such file; check the path") from None
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read: {exc.strerror}") from None
    loader = yaml.SafeLoader(text)
    lines = LineMap()
    try:
        node = loader.get_single_node()
        if node is None:
            raise ConfigError(f"{source}:1: the file is empty; expected a mapping of settings")
        data = _build(loader, node, (), lines, source)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise ConfigError(f"{source}:{line}: YAML syntax error: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: YAML error: {exc}") from None
    finally:
        loader.dispose()
    return data, lines


def dotted(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def describe_pydantic_error(err: dict, fields: list[str] | None = None) -> str:
    kind, msg = err["type"], err["msg"]
    if kind == "extra_forbidden":
        valid = f"; valid fields: {', '.join(fields)}" if fields else ""
        return f"unknown field; remove it or check its spelling{valid}"
    if kind == "missing":
        return "required field is missing"
    if kind == "value_error":
        msg = msg.removeprefix("Value error, ")
    return msg[0].lower() + msg[1:] if msg else kind


def validation_errors(exc: ValidationError, source: str, lines: LineMap, prefix: Loc = (),
                      model: type | None = None) -> list[str]:
    """One `file:line: field: problem` line per error; with `model`, an unknown field lists the valid ones."""
    out = []
    for err in exc.errors():
        loc = prefix + tuple(err["loc"])
        line = lines.line_of(loc)
        where = f"{source}:{line}" if line else source
        fields = _fields_at(model, tuple(err["loc"])[:-1]) if model is not None else None
        out.append(f"{where}: {dotted(loc)}: {describe_pydantic_error(err, fields)}")
    return out


def _fields_at(model: type, loc: tuple) -> list[str] | None:
    """The field names of the (nested) pydantic model at `loc`, for 'valid fields' hints."""
    for part in loc:
        if isinstance(part, int) or model is None:
            continue
        field = getattr(model, "model_fields", {}).get(part)
        ann = getattr(field, "annotation", None)
        model = ann if isinstance(ann, type) and hasattr(ann, "model_fields") else None
    if model is None or not hasattr(model, "model_fields"):
        return None
    return sorted(model.model_fields)


def raise_if(errors: list[str]) -> None:
    if errors:
        raise ConfigError("\n".join(errors))
