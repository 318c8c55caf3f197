"""YAML with positions: every value keeps the line and column it was written at.

Validation reports `file:line:column` for each problem, so loading keeps a map from the path
of each value (("ports", "jupyter"), ("volumes", 2)) to where it stands in the file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from devbox.errors import InvalidInput, Origin, Problem

_INT_TAG = "tag:yaml.org,2002:int"
_FLOAT_TAG = "tag:yaml.org,2002:float"
_NON_STRING_TAGS = (_INT_TAG, _FLOAT_TAG, "tag:yaml.org,2002:bool")
_DECIMAL_RE = re.compile(r"^[-+]?(0|[1-9][0-9]*)$")


def _is_text(path: KeyPath) -> bool:
    """Values Docker takes as strings, whatever YAML would make of them (also under defaults:)."""
    parent = path[:-1]
    return (
        parent[-1:] in (("env",), ("labels",), ("command",))
        or parent[-2:] == ("build", "args")
        or path[-1:] == ("user",)
    )


Key = str | int
KeyPath = tuple[Key, ...]


@dataclass
class Document:
    """A parsed YAML file: its data, and where each value and mapping key was written."""

    source: str
    data: Any
    value_marks: dict[KeyPath, tuple[int, int]] = field(default_factory=dict)
    key_marks: dict[KeyPath, tuple[int, int]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    def origin(self, path: KeyPath) -> Origin:
        """Where the value at `path` (or its nearest written ancestor) stands."""
        return self._find(self.value_marks, path)

    def key_origin(self, path: KeyPath) -> Origin:
        """Where the mapping key that ends `path` stands (falls back to the value)."""
        if path in self.key_marks:
            line, col = self.key_marks[path]
            return Origin(self.source, line, col)
        return self.origin(path)

    def subdocument(self, key: str) -> Document:
        """The value under top-level `key` as a document of its own, positions kept."""
        data = self.data.get(key) if isinstance(self.data, dict) else None
        n = 1

        def strip(
            marks: dict[KeyPath, tuple[int, int]],
        ) -> dict[KeyPath, tuple[int, int]]:
            return {p[n:]: m for p, m in marks.items() if p[:n] == (key,)}

        return Document(self.source, data, strip(self.value_marks), strip(self.key_marks))

    def _find(self, marks: dict[KeyPath, tuple[int, int]], path: KeyPath) -> Origin:
        for end in range(len(path), -1, -1):
            mark = marks.get(path[:end])
            if mark is not None:
                return Origin(self.source, mark[0], mark[1])
        # Documents built from flags carry no positions: the flag itself is the origin.
        return Origin(self.source)


def load_text(text: str, source: str) -> Document:
    """Parse YAML text; a syntax error raises InvalidInput located at the error."""
    loader: yaml.SafeLoader | None = None
    try:
        # Inside the try: the reader rejects control characters as soon as it is built.
        loader = yaml.SafeLoader(text)
        node = loader.get_single_node()
        doc = Document(source, None)
        if node is not None:
            doc.data = _build(loader, node, (), doc)
        return doc
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        origin = Origin(source, mark.line + 1, mark.column + 1) if mark else Origin(source)
        message = f"YAML syntax: {exc.problem or exc.context}"
        raise InvalidInput(
            f"{source} is not valid YAML",
            [Problem(origin, message, "check indentation and quoting around this spot")],
        ) from None
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{source} is not valid YAML", [Problem(Origin(source), str(exc))]) from None
    except RecursionError:
        raise InvalidInput(
            f"{source} is not valid YAML", [Problem(Origin(source), "nested too deeply to be a profile")]
        ) from None
    finally:
        if loader is not None:
            loader.dispose()


def load_file(path: Path) -> Document:
    """Read and parse a YAML file; an unreadable file raises InvalidInput naming it."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(
            f"cannot read {path}",
            [Problem(Origin(str(path)), exc.strerror or str(exc))],
        ) from None
    except UnicodeDecodeError:
        raise InvalidInput(
            f"cannot read {path}",
            [Problem(Origin(str(path)), "the file is not UTF-8 text")],
        ) from None
    return load_text(text, str(path))


def _mark(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _build(loader: yaml.SafeLoader, node: yaml.Node, path: KeyPath, doc: Document) -> Any:
    doc.value_marks[path] = _mark(node)
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # resolves YAML merge keys (<<: *anchor)
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = (
                # A key is a name: ON, yes or 0755 as written, not YAML 1.1's True or 493.
                str(key_node.value)
                if isinstance(key_node, yaml.ScalarNode) and key_node.tag in _NON_STRING_TAGS
                else loader.construct_object(key_node, deep=True)
            )
            if not isinstance(key, (str, int)) or isinstance(key, bool):
                doc.problems.append(
                    Problem(
                        Origin(doc.source, *_mark(key_node)),
                        f"a key must be a name, not {key!r}",
                    )
                )
                continue
            key = str(key)
            child = (*path, key)
            if key in result:
                doc.problems.append(
                    Problem(
                        Origin(doc.source, *_mark(key_node)),
                        f"'{key}' is given twice",
                        "keep one of them: YAML would silently use the last",
                    )
                )
            doc.key_marks[child] = _mark(key_node)
            result[key] = _build(loader, value_node, child, doc)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_build(loader, item, (*path, i), doc) for i, item in enumerate(node.value)]
    if node.tag in (_INT_TAG, _FLOAT_TAG) and ":" in str(node.value):
        # YAML 1.1 reads 2222:22 as a base-60 number (133342); every such value here is a
        # port pair or a uid:gid, so keep the text as written.
        return str(node.value)
    if node.tag in _NON_STRING_TAGS and _is_text(path):
        # Env values, labels, build args, command words and user are text: VERSION: 1.10
        # must stay "1.10", not 1.1, and 0123 must not turn into 83 (YAML 1.1 octal).
        return str(node.value)
    if node.tag == _INT_TAG and not _DECIMAL_RE.match(str(node.value)):
        # 010, 0x1F, 1_000: YAML 1.1 reads them as octal, hex or grouped; people mean what
        # they typed. The text goes on, and the key's own parser reads it as decimal.
        return str(node.value)
    return loader.construct_object(node, deep=True)
