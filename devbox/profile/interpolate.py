"""`${VAR}` and `${VAR:-default}` in profile strings; `$$` writes a literal `$`."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from devbox.errors import Problem
from devbox.profile.yamlsrc import Document, KeyPath

_VAR_RE = re.compile(r"\$\$|\$\{([^}]*)\}")
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class UnsetVariable(ValueError):
    """A `${VAR}` without a default names a variable that is not set."""


def expand(text: str, env: Mapping[str, str]) -> str:
    """Replace every `${VAR}` / `${VAR:-default}` in `text`; raise ValueError on a bad one."""

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        body = match.group(1)
        name, sep, default = body.partition(":-")
        if not _NAME_RE.match(name):
            raise ValueError(
                f"'${{{body}}}' is not a variable reference (use ${{NAME}} or ${{NAME:-default}})"
            )
        value = env.get(name)
        if value:
            return value
        if sep:
            return default
        if value is not None:
            return value
        raise UnsetVariable(f"${{{name}}} is not set")

    return _VAR_RE.sub(substitute, text)


def expand_document(doc: Document, env: Mapping[str, str]) -> list[Problem]:
    """Expand variables in every string value of `doc` in place; return the problems found."""
    problems: list[Problem] = []
    doc.data = _walk(doc.data, (), doc, env, problems)
    return problems


def _walk(
    value: Any,
    path: KeyPath,
    doc: Document,
    env: Mapping[str, str],
    problems: list[Problem],
) -> Any:
    if isinstance(value, dict):
        return {k: _walk(v, (*path, k), doc, env, problems) for k, v in value.items()}
    if isinstance(value, list):
        return [_walk(v, (*path, i), doc, env, problems) for i, v in enumerate(value)]
    if isinstance(value, str) and "$" in value:
        try:
            return expand(value, env)
        except UnsetVariable as exc:
            name = str(exc).split()[0]
            hint = f"export it, or give a default: {name[:-1]}:-value}}"
            problems.append(Problem(doc.origin(path), str(exc), hint))
        except ValueError as exc:
            problems.append(Problem(doc.origin(path), str(exc), "write $$ for a literal $"))
    return value
