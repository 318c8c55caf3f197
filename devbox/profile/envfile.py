"""`.env` files in docker compose's dialect (compose-go's dotenv parser), with located errors.

The dialect (docs/profiles.md, "env files"):

- one `KEY=VALUE` a line; `export KEY=VALUE` and compose's YAML-like `KEY: VALUE` too;
  spaces around `=` are dropped; keys are letters, digits, `_`, `.`, `-`, `[` and `]`;
- blank lines, and lines whose first character is `#`, are skipped;
- an unquoted value runs to the end of the line, trailing spaces dropped; ` #` (a space,
  then `#`) starts a comment there: `A=x #y` is `x`, `A=x#y` is `x#y`; `A=` is empty;
- 'single quotes' keep everything as written (`\\'` is a quote);
- "double quotes" take `\\n`, `\\t`, `\\r`, `\\"`, `\\\\`, `\\$` (and `\\a \\b \\f \\v`, octal `\\0NNN`);
- a quoted value may span lines; after its closing quote only a `#` comment may follow.

Where devbox differs from compose, on purpose: `${VAR}` is not expanded (docker run's
--env-file does not either: `$` is kept as written; use `env:` in the profile for values
from your environment), and a line that is a bare `KEY` is an error, not "take KEY from
the environment" (the box would get a value from wherever devbox runs). A line compose
would refuse, or read as something else than it looks, is an EnvFileError with its line.
"""

from __future__ import annotations

import re

from devbox.errors import InvalidInput, Origin, Problem
from devbox.profile import files

# Variables that pick a box's GPUs, refused in env:, env files and -e. The NVIDIA runtime hands
# a box whatever NVIDIA_VISIBLE_DEVICES names, past allocation and the lab's limits; and
# CUDA_VISIBLE_DEVICES numbers the box's own GPUs from 0, so a host's index there is wrong.
GPU_VARIABLES = {
    "NVIDIA_VISIBLE_DEVICES": "NVIDIA_VISIBLE_DEVICES is set by devbox from gpus:",
    "CUDA_VISIBLE_DEVICES": "CUDA_VISIBLE_DEVICES would pick among the box's own GPUs, which are "
    "numbered from 0 inside it: a host's GPU index there names another GPU or none",
}
GPU_VARIABLES_FIX = "ask for the host's GPUs with gpus: 2 (any two) or gpus: [0, 3] (those two)"
FIX = 'write KEY=VALUE (quote a value with spaces or #: KEY="a b"); a line starting with # is a comment'

_EXPORT_RE = re.compile(r"export\s+")
_KEY_RE = re.compile(r"[\w.\-\[\]]+")
_SPACE = " \t\v\f\r\x85\xa0"  # compose's spaces: no line break
_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "$": "$"}
_OCTAL_RE = re.compile(r"0([0-7]{3})")


class EnvFileError(ValueError):
    """A line of an env file that is not in the dialect: `line` (1-based), `column`, why and the fix."""

    def __init__(self, line: int, column: int, message: str, fix: str = FIX) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line
        self.column = column
        self.message = message
        self.fix = fix


def parse(text: str) -> dict[str, str]:
    """Variables of an env file, later lines winning; EnvFileError for the first bad line."""
    env: dict[str, str] = {}
    lines = text.split("\n")
    number = 0
    while number < len(lines):
        raw = lines[number]
        number += 1
        line = raw.lstrip(_SPACE + "\ufeff" if number == 1 else _SPACE)
        if not line or line.startswith("#"):
            continue
        indent = len(raw) - len(line)
        export = _EXPORT_RE.match(line)
        rest = line[export.end() :] if export else line
        key_match = _KEY_RE.match(rest)
        key = key_match.group(0) if key_match else ""
        after = rest[len(key) :].lstrip(_SPACE)
        column = indent + (export.end() if export else 0) + 1
        if not key:
            bad = rest[:1]
            raise EnvFileError(number, column, f"unexpected character {bad!r}: a line starts with a KEY")
        if not after:
            raise EnvFileError(
                number,
                column,
                f"{key} has no value (no '=')",
                f"write {key}=VALUE, or {key}= for an empty value; "
                f"a value from your environment goes in the profile's env: {{{key}: ${{{key}}}}}",
            )
        if after[0] not in "=:":
            where = column + len(rest) - len(after)
            raise EnvFileError(
                number, where, f"unexpected character {after[0]!r} after the name {key!r}", FIX
            )
        value_text = after[1:].lstrip(_SPACE)
        if value_text[:1] in ("'", '"'):
            value, number = _quoted(value_text, lines, number)
        else:
            value = value_text.split(" #", 1)[0].rstrip(_SPACE)
        env[key] = value
    return env


def _quoted(text: str, lines: list[str], number: int) -> tuple[str, int]:
    """The value of a quoted string starting `text` (on line `number`), and the last line it
    took; it may go on over the next lines, as in compose."""
    quote = text[0]
    start = number
    chars: list[str] = []
    current = text[1:]
    while True:
        i = 0
        while i < len(current):
            char = current[i]
            if char == "\\" and i + 1 < len(current):
                nxt = current[i + 1]
                if nxt == quote:
                    chars.append(quote)
                    i += 2
                    continue
                if quote == '"':
                    took = _escape(current, i + 1, chars)
                    i += took + 1
                    continue
                # As compose: the backslash takes the next character with it, kept as written
                # ('a\\' is a\\, its quote not escaped by the second backslash).
                chars.append(char + nxt)
                i += 2
                continue
            if char == quote:
                tail = current[i + 1 :].lstrip(_SPACE)
                if tail and not tail.startswith("#"):
                    raise EnvFileError(
                        number,
                        len(lines[number - 1]) - len(tail) + 1,
                        f"text after the closing {quote}: {tail[:20]!r}",
                        "put a # before a comment, or the whole value inside the quotes",
                    )
                return "".join(chars), number
            chars.append(char)
            i += 1
        if number >= len(lines):
            raise EnvFileError(
                start,
                1,
                f"unterminated quoted value (the {quote} opened here is never closed)",
                f"close the value with {quote}",
            )
        chars.append("\n")
        current = lines[number]
        number += 1


def _escape(text: str, at: int, chars: list[str]) -> int:
    """Append the escape at `text[at]` (the character after a backslash, in double quotes);
    returns how many characters it took. An unknown one stays as written, as compose keeps it."""
    char = text[at]
    if char in _ESCAPES:
        chars.append(_ESCAPES[char])
        return 1
    if char == "\\":
        chars.append("\\")
        return 1
    octal = _OCTAL_RE.match(text, at)
    if octal:
        chars.append(chr(int(octal.group(1), 8)))
        return len(octal.group(0))
    chars.append("\\" + char)
    return 1


def problem_of(path: str, exc: EnvFileError) -> Problem:
    """The located Problem of a bad line of the env file at `path`."""
    return Problem(Origin(files.shown(path), exc.line, exc.column), f"env file: {exc.message}", exc.fix)


def load(path: str) -> dict[str, str]:
    """Variables of the env file at `path`; InvalidInput naming it (and the line) if it cannot
    be read as UTF-8 text or has a bad line."""
    shown = files.shown(path)
    try:
        return parse(files.read_text(path))
    except EnvFileError as exc:
        raise InvalidInput(f"env file {shown} has a bad line", [problem_of(path, exc)]) from None
    except ValueError as exc:
        raise InvalidInput(
            f"env file {shown} {exc}",
            [Problem(Origin(shown), str(exc), "make it a readable UTF-8 KEY=VALUE file")],
        ) from None
