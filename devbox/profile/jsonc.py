"""JSON with comments (JSONC, as devcontainer.json is written) → a `Document` with positions.

The same shape yamlsrc.py makes of a profile: the data, and the line and column of every value
and mapping key, so a devcontainer.json's problems are located `file:line:column` like a
profile's. Accepted beyond strict JSON, as VS Code's parser accepts: `//` and `/* */`
comments, trailing commas before `]` and `}`, and a byte-order mark.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from devbox.errors import InvalidInput, Origin, Problem
from devbox.profile.yamlsrc import MAX_DEPTH, MAX_VALUES, Document, KeyPath, read_source

_NUMBER_RE = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?")
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_WORDS: dict[str, Any] = {"true": True, "false": False, "null": None}


class _Syntax(Exception):
    """A syntax error at a character offset."""

    def __init__(self, at: int, message: str) -> None:
        super().__init__(message)
        self.at = at
        self.message = message


class _Parser:
    def __init__(self, text: str, doc: Document) -> None:
        self.text = text
        self.doc = doc
        self.i = 0
        self.values = 0
        # Offsets where each line starts, to turn an offset into line:column.
        self.line_starts = [0] + [m.end() for m in re.finditer(r"\n", text)]

    def position(self, at: int) -> tuple[int, int]:
        lo, hi = 0, len(self.line_starts) - 1
        while lo < hi:  # the last line start at or before `at`
            mid = (lo + hi + 1) // 2
            if self.line_starts[mid] <= at:
                lo = mid
            else:
                hi = mid - 1
        return lo + 1, at - self.line_starts[lo] + 1

    def skip(self) -> None:
        """Whitespace and comments."""
        text, n = self.text, len(self.text)
        while self.i < n:
            c = text[self.i]
            if c in " \t\r\n":
                self.i += 1
            elif text.startswith("//", self.i):
                end = text.find("\n", self.i)
                self.i = n if end < 0 else end + 1
            elif text.startswith("/*", self.i):
                end = text.find("*/", self.i + 2)
                if end < 0:
                    raise _Syntax(self.i, "a /* comment is never closed with */")
                self.i = end + 2
            else:
                return

    def value(self, path: KeyPath, depth: int) -> Any:
        self.skip()
        if self.i >= len(self.text):
            raise _Syntax(self.i, "the file ends where a value should be")
        if depth > MAX_DEPTH:
            raise _Syntax(self.i, f"nested deeper than {MAX_DEPTH} levels")
        self.values += 1
        if self.values > MAX_VALUES:
            raise _Syntax(self.i, f"more than {MAX_VALUES} values in one file")
        self.doc.value_marks[path] = self.position(self.i)
        c = self.text[self.i]
        if c == "{":
            return self.mapping(path, depth)
        if c == "[":
            return self.sequence(path, depth)
        if c == '"':
            return self.string()
        match = _NUMBER_RE.match(self.text, self.i)
        if match and match.end() > self.i:
            self.i = match.end()
            number = match.group(0)
            return float(number) if match.group(2) or match.group(3) else int(number)
        for word, meaning in _WORDS.items():
            if self.text.startswith(word, self.i):
                self.i += len(word)
                return meaning
        if c == "'":
            raise _Syntax(self.i, "JSON strings take double quotes, not single ones")
        raise _Syntax(self.i, f"unexpected {self.text[self.i]!r} where a value should be")

    def mapping(self, path: KeyPath, depth: int) -> dict[str, Any]:
        result: dict[str, Any] = {}
        self.i += 1
        while True:
            self.skip()
            if self.i < len(self.text) and self.text[self.i] == "}":
                self.i += 1
                return result
            if self.i >= len(self.text) or self.text[self.i] != '"':
                raise _Syntax(self.i, 'expected a "key" or }')
            key_at = self.i
            key = self.string()
            self.skip()
            if not self.text.startswith(":", self.i):
                raise _Syntax(self.i, f'expected : after the key "{key}"')
            self.i += 1
            child = (*path, key)
            if key in result:
                line, col = self.position(key_at)
                self.doc.problems.append(
                    Problem(
                        Origin(self.doc.source, line, col),
                        f"'{key}' is given twice",
                        "keep one of them: JSON readers silently use the last",
                    )
                )
            self.doc.key_marks[child] = self.position(key_at)
            result[key] = self.value(child, depth + 1)
            if not self.separator("}"):
                self.i += 1
                return result

    def sequence(self, path: KeyPath, depth: int) -> list[Any]:
        result: list[Any] = []
        self.i += 1
        while True:
            self.skip()
            if self.i < len(self.text) and self.text[self.i] == "]":
                self.i += 1
                return result
            result.append(self.value((*path, len(result)), depth + 1))
            if not self.separator("]"):
                self.i += 1
                return result

    def separator(self, close: str) -> bool:
        """True after a comma (another entry, or a trailing comma), False at `close`."""
        self.skip()
        if self.i < len(self.text) and self.text[self.i] == ",":
            self.i += 1
            return True
        if self.i < len(self.text) and self.text[self.i] == close:
            return False
        raise _Syntax(self.i, f"expected , or {close}")

    def string(self) -> str:
        text, n = self.text, len(self.text)
        start = self.i
        self.i += 1
        out: list[str] = []
        while True:
            if self.i >= n:
                raise _Syntax(start, 'a string is never closed with "')
            c = text[self.i]
            if c == '"':
                self.i += 1
                return "".join(out)
            if c == "\n":
                raise _Syntax(start, 'a string is never closed with " on its line')
            if c == "\\":
                self.i += 1
                e = text[self.i : self.i + 1]
                if e in _ESCAPES:
                    out.append(_ESCAPES[e])
                    self.i += 1
                elif e == "u":
                    out.append(self.unicode())
                else:
                    raise _Syntax(self.i - 1, f"\\{e} is not a JSON escape")
                continue
            out.append(c)
            self.i += 1

    def unicode(self) -> str:
        code = self.hex4(self.i + 1)
        self.i += 5
        if 0xD800 <= code < 0xDC00 and self.text.startswith("\\u", self.i):
            low = self.hex4(self.i + 2)
            if 0xDC00 <= low < 0xE000:  # a surrogate pair: one character outside the BMP
                self.i += 6
                return chr(0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00))
        if 0xD800 <= code < 0xE000:
            return "\ufffd"  # a lone surrogate cannot be UTF-8 text
        return chr(code)

    def hex4(self, at: int) -> int:
        digits = self.text[at : at + 4]
        if len(digits) != 4 or not all(c in "0123456789abcdefABCDEF" for c in digits):
            raise _Syntax(at - 2, "\\u needs four hex digits")
        return int(digits, 16)


def load_text(text: str, source: str) -> Document:
    """Parse JSONC text; a syntax error raises InvalidInput located at its line and column."""
    doc = Document(source, None)
    parser = _Parser(text.removeprefix("\ufeff"), doc)
    try:
        parser.skip()
        if parser.i >= len(parser.text):
            return doc  # an empty file (or only comments): nothing set, as an empty profile
        doc.data = parser.value((), 0)
        parser.skip()
        if parser.i < len(parser.text):
            raise _Syntax(parser.i, "more after the end of the JSON value")
    except _Syntax as exc:
        line, col = parser.position(exc.at)
        raise InvalidInput(
            f"{source} is not valid JSON",
            [
                Problem(
                    Origin(source, line, col),
                    f"JSON syntax: {exc.message}",
                    "check the quoting and commas here",
                )
            ],
        ) from None
    return doc


def load_file(path: Path) -> Document:
    """Read and parse a JSONC file; an unreadable or non-UTF-8 file raises InvalidInput naming it."""
    return load_text(read_source(path), str(path))
