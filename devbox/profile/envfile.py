"""`.env` files: KEY=VALUE lines, as `docker run --env-file` reads them plus the usual quoting."""

from __future__ import annotations

import re

_LINE_RE = re.compile(r"^\s*(?:export\s+)?(?P<key>[A-Za-z_][A-Za-z0-9_]*)\s*=\s*(?P<value>.*?)\s*$")


def parse(text: str) -> dict[str, str]:
    """Variables of an env file; comments, blank and malformed lines are skipped."""
    env: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _LINE_RE.match(line)
        if not match:
            continue
        value = match.group("value")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        env[match.group("key")] = value
    return env
