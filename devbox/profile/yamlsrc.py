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
from devbox.profile import files

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


# Bounds on one document, far above any real profile or policy (a few dozen values) and far
# below what hurts: 10 aliases of 10 aliases, 7 levels deep, is 394 bytes of YAML that
# PyYAML alone expands to 10**7 values (46 s and 3 GB before a MemoryError).
MAX_VALUES = 10_000  # values in the document once every alias is expanded
MAX_ALIASES = 100
MAX_DEPTH = 32
# Text once aliases are expanded: a 1 MiB value aliased 99 times is 100 MiB on the command line.
MAX_EXPANDED_BYTES = 4 * 2**20
_LONGEST_INT = 30  # digits; longer ints stay text (Python refuses int() of over 4300 digits)


class _TooBig(Exception):
    """The document breaks a bound; raised at the spot that broke it."""

    def __init__(self, mark: yaml.Mark, message: str) -> None:
        super().__init__(message)
        self.mark = mark
        self.message = message


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that counts while it composes: aliases, depth, and values with aliases expanded.

    Composing keeps an alias as a second reference to its anchor's node (cheap); what costs
    is everything after (merge keys, building the data) walking those references as copies.
    So each node's expanded size is summed here, from its children's, and a document past
    a bound is refused before any of that starts.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.expanded: dict[int, int] = {}  # id(node) -> values under it, aliases expanded
        self.expanded_bytes: dict[int, int] = {}  # id(node) -> characters of text under it, likewise
        self.aliases = 0
        self.depth = 0
        self.composed = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                raise _TooBig(event.start_mark, f"more than {MAX_ALIASES} aliases (*name) in one file")
            anchored = self.anchors.get(event.anchor)
            if anchored is not None and id(anchored) not in self.expanded:
                raise _TooBig(event.start_mark, f"alias *{event.anchor} stands inside its own anchor")
            aliased = super().compose_node(parent, index)
            assert aliased is not None
            return aliased
        self.depth += 1
        if self.depth > MAX_DEPTH:
            mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
            raise _TooBig(mark, f"nested deeper than {MAX_DEPTH} levels")
        try:
            composed = super().compose_node(parent, index)
        finally:
            self.depth -= 1
        assert composed is not None  # compose_node returns None only at the end of the stream
        node: yaml.Node = composed
        self.composed += 1
        size = 1 + sum(self.expanded[id(child)] for child in _children(node))
        if self.composed > MAX_VALUES:
            raise _TooBig(node.start_mark, f"more than {MAX_VALUES} values in one file")
        if size > MAX_VALUES:
            raise _TooBig(node.start_mark, f"the aliases here expand to more than {MAX_VALUES} values")
        text = len(node.value) if isinstance(node, yaml.ScalarNode) else 0
        text += sum(self.expanded_bytes[id(child)] for child in _children(node))
        if text > MAX_EXPANDED_BYTES:
            limit = MAX_EXPANDED_BYTES // 2**20
            raise _TooBig(node.start_mark, f"the aliases here expand to more than {limit} MiB of text")
        self.expanded[id(node)] = size
        self.expanded_bytes[id(node)] = text
        return node


def load_text(text: str, source: str) -> Document:
    """Parse YAML text; a syntax error or a document past the bounds raises InvalidInput located there."""
    loader: _BoundedLoader | None = None
    try:
        # Inside the try: the reader rejects control characters as soon as it is built.
        loader = _BoundedLoader(text)
        node = loader.get_single_node()
        doc = Document(source, None)
        if node is not None:
            doc.data = _build(loader, node, (), doc)
        return doc
    except _TooBig as exc:
        origin = Origin(source, exc.mark.line + 1, exc.mark.column + 1)
        raise InvalidInput(
            f"{source} is too big or too tangled to read",
            [Problem(origin, exc.message, "write the values out instead of repeating aliases")],
        ) from None
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


def read_source(path: Path) -> str:
    """The text of a profile-like file; an unreadable, non-UTF-8 or too big one raises InvalidInput."""
    try:
        return files.read_text(str(path))
    except ValueError as exc:
        raise InvalidInput(
            f"cannot read {files.shown(str(path))}",
            [Problem(Origin(files.shown(str(path))), f"the file {exc}")],
        ) from None


def load_file(path: Path) -> Document:
    """Read and parse a YAML file; an unreadable, non-UTF-8 or too big file raises InvalidInput naming it."""
    return load_text(read_source(path), str(path))


def _mark(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _build(loader: _BoundedLoader, node: yaml.Node, path: KeyPath, doc: Document) -> Any:
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
                what = (
                    repr(key) if key is None or isinstance(key, (bool, float)) else f"a {type(key).__name__}"
                )
                doc.problems.append(
                    Problem(Origin(doc.source, *_mark(key_node)), f"a key must be a name, not {what}")
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
    if node.tag == _INT_TAG and (
        not _DECIMAL_RE.match(str(node.value)) or len(str(node.value)) > _LONGEST_INT
    ):
        # 010, 0x1F, 1_000: YAML 1.1 reads them as octal, hex or grouped; people mean what
        # they typed. The text goes on, and the key's own parser reads it as decimal (or
        # says it is too big: no quota has 30 digits).
        return str(node.value)
    return loader.construct_object(node, deep=True)
