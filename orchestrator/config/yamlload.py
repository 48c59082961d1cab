"""YAML loading that remembers where every value came from, for one-line `file:line: field: problem` errors.

It is also the boundary against hostile or mistaken files: a size cap, a bound on what YAML
aliases may add (a "billion laughs" file is refused before it is expanded), no recursive
aliases, a nesting limit, and at most MAX_ERRORS error lines however many fields are wrong.
"""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any, Mapping

import yaml
from pydantic import ValidationError

from ..errors import ConfigError

Loc = tuple  # path of keys / indexes from the document root

MAX_FILE_BYTES = 256 << 10  # the largest shipped suite is a few KiB; PyYAML reads ~100 KiB/s here
MAX_ALIAS_VALUES = 10_000  # values all aliases together may add when expanded
MAX_DEPTH = 64  # nesting of mappings and lists; PyYAML's composer recurses per level
MAX_ERRORS = 10  # error lines shown; the rest are counted


class LineMap(dict):
    """(key, key, index, ...) -> 1-based line number in the source file."""

    def line_of(self, loc: Loc) -> int | None:
        loc = tuple(loc)
        while loc:
            if loc in self:
                return self[loc]
            loc = loc[:-1]
        return self.get((), None)


class BoundedLoader(yaml.SafeLoader):
    """SafeLoader whose composer refuses recursive aliases, alias expansion beyond
    MAX_ALIAS_VALUES values and nesting beyond MAX_DEPTH, each with one `file:line:` error."""

    def __init__(self, stream: str, source: str):
        super().__init__(stream)
        self.source = source
        self._open_anchors: list[str | None] = []  # anchors of the nodes being composed, outermost first
        self._sizes: dict[int, int] = {}  # id(node) -> values it stands for once expanded
        self._alias_values = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event = self.peek_event()
        line = event.start_mark.line + 1
        if isinstance(event, yaml.AliasEvent):
            target = self.anchors.get(event.anchor)
            if target is None:  # PyYAML's own "undefined alias" error
                return super().compose_node(parent, index)
            if event.anchor in self._open_anchors:
                raise ConfigError(f"{self.source}:{line}: YAML alias *{event.anchor} is used inside the block "
                                  f"&{event.anchor} names (a recursive alias); refer only to a block defined "
                                  f"before and outside it")
            self._alias_values += self._sizes.get(id(target), 1)
            if self._alias_values > MAX_ALIAS_VALUES:
                raise ConfigError(f"{self.source}:{line}: YAML aliases expand to more than {MAX_ALIAS_VALUES} "
                                  f"values (at *{event.anchor}); write the repeated settings out or alias less")
            return super().compose_node(parent, index)
        if len(self._open_anchors) >= MAX_DEPTH:
            raise ConfigError(f"{self.source}:{line}: nested more than {MAX_DEPTH} levels deep; a suite needs a few")
        self._open_anchors.append(getattr(event, "anchor", None))
        try:
            node = super().compose_node(parent, index)
        finally:
            self._open_anchors.pop()
        if node is not None:
            self._sizes[id(node)] = 1 + sum(self._sizes.get(id(child), 1) for child in _children(node))
        return node


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _read_bounded(path: Path, source: str) -> str:
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ConfigError(f"{source}: {size} bytes; a suite or lab file is at most {MAX_FILE_BYTES >> 10} KiB "
                              f"(is this the right file?)")
        with open(path, "rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)  # stat says 0 for /dev/zero and pipes
    except FileNotFoundError:
        raise ConfigError(f"{source}: no such file; check the path") from None
    except IsADirectoryError:
        raise ConfigError(f"{source}: is a directory; give the YAML file") from None
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read: {exc.strerror}") from None
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(f"{source}: more than {MAX_FILE_BYTES >> 10} KiB; a suite or lab file is at most that")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise ConfigError(f"{source}:{line}: not UTF-8 text (byte {exc.start}); save the file as UTF-8") from None


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
    text = _read_bounded(Path(path), source)
    loader = BoundedLoader(text, source)
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
    except RecursionError:  # MAX_DEPTH keeps the composer below the limit; this is the last line of defence
        raise ConfigError(f"{source}: nested too deeply to read; a suite needs a few levels") from None
    finally:
        loader.dispose()
    return data, lines


def dotted(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def describe_pydantic_error(err: Mapping[str, Any], fields: list[str] | None = None) -> str:
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


def _fields_at(model: type | None, loc: tuple) -> list[str] | None:
    """The field names of the (nested) pydantic model at `loc`, for 'valid fields' hints."""
    for part in loc:
        if isinstance(part, int) or model is None:
            continue
        field = getattr(model, "model_fields", {}).get(part)
        model = _model_in(getattr(field, "annotation", None))
    if model is None or not hasattr(model, "model_fields"):
        return None
    return sorted(model.model_fields)


def _model_in(ann: Any) -> type | None:
    """The pydantic model an annotation holds: Model, Model | None, list[Model] (claims[0].field)."""
    if isinstance(ann, type) and hasattr(ann, "model_fields"):
        return ann
    models = [m for a in typing.get_args(ann) if (m := _model_in(a)) is not None]
    return models[0] if len(models) == 1 else None


def capped(errors: list[str], limit: int = MAX_ERRORS) -> list[str]:
    """The first `limit` errors and a count of the rest: a file of 300,000 wrong keys is not 300,000 lines."""
    if len(errors) <= limit:
        return errors
    return errors[:limit] + [f"... and {len(errors) - limit} more errors like these; fix the ones above first"]


def raise_if(errors: list[str]) -> None:
    if errors:
        raise ConfigError("\n".join(capped(errors)))
