"""The devcontainer variables (${localEnv:NAME}, ${localWorkspaceFolder}, …), substituted in a
devcontainer.json before any key is read, as the spec orders; unset ones found where a path starts.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from devbox.profile.devcontainer_out import LIFECYCLE, Out
from devbox.profile.yamlsrc import Document, KeyPath

_VAR_RE = re.compile(r"\$\{([A-Za-z]+)(?::([^}:]*))?(?::([^}]*))?\}")
# Where a mount's source path starts in a --mount string or a runArgs item.
_PATH_STARTS = ("source=", "src=", "--volume=", "-v=", "-v")


class Variables:
    """The devcontainer variables, substituted before anything is read (the spec's order)."""

    def __init__(self, env: Mapping[str, str], workspace: Path, folder: str) -> None:
        self.env = env
        self.local = {
            "localWorkspaceFolder": str(workspace),
            "localWorkspaceFolderBasename": workspace.name,
            "devcontainerId": hashlib.sha256(str(workspace).encode()).hexdigest()[:16],
        }
        # workspaceFolder may itself use the local ones.
        self.folder = self.expand(folder, None)
        self.local["containerWorkspaceFolder"] = self.folder
        self.local["containerWorkspaceFolderBasename"] = self.folder.rstrip("/").rpartition("/")[2]

    def expand(self, text: str, bad: list[str] | None) -> str:
        """`text` with its devcontainer variables substituted; ${containerEnv:…} ones added to `bad`."""

        def substitute(match: re.Match[str]) -> str:
            kind, name, default = match.group(1), match.group(2), match.group(3)
            if kind in ("localEnv", "env") and name is not None:
                return self.env.get(name) or (default or "")
            if kind in self.local and name is None:
                return self.local[kind]
            if kind == "containerEnv" and bad is not None:
                bad.append(match.group(0))
            return match.group(0)  # not a devcontainer variable: a shell's ${HOME} stays as written

        return _VAR_RE.sub(substitute, text)

    def unset_lead(self, text: str) -> str | None:
        """The first variable of a path (the text's start, or a `source=`) made only of unset
        ${localEnv:NAME}s without a default: "${localEnv:NOPE}/.ssh" is "/.ssh". The spec's
        "${localEnv:HOME}${localEnv:USERPROFILE}" (one of the two set) is a whole path."""
        runs: list[list[re.Match[str]]] = []
        for match in _VAR_RE.finditer(text):
            if runs and runs[-1][-1].end() == match.start():
                runs[-1].append(match)
            elif match.start() == 0 or text[: match.start()].endswith(_PATH_STARTS):
                runs.append([match])
        for run in runs:
            if all(self._unset(m) for m in run):
                return run[0].group(0)
        return None

    def _unset(self, match: re.Match[str]) -> bool:
        kind, name, default = match.group(1), match.group(2), match.group(3)
        return kind in ("localEnv", "env") and name is not None and name not in self.env and default is None

    def walk(self, value: Any, path: KeyPath, doc: Document, out: Out) -> Any:
        """`value` (the file's data at `path`) with every string substituted; problems and unset
        variables written to `out`."""
        if isinstance(value, dict):
            return {k: self.walk(v, (*path, k), doc, out) for k, v in value.items()}
        if isinstance(value, list):
            return [self.walk(v, (*path, i), doc, out) for i, v in enumerate(value)]
        if isinstance(value, str) and "${" in value:
            bad: list[str] = []
            expanded = self.expand(value, bad)
            lead = self.unset_lead(value)
            if lead:
                out.unset[path] = lead  # a bind source from it is refused (Out.unset_in)
            if bad and path[:1] != ("remoteEnv",) and path[:1] not in tuple((k,) for k in LIFECYCLE):
                out.fail(
                    path,
                    f"{bad[0]} is known only inside the box, not when devbox reads this file",
                    "use ${localEnv:NAME}, or set it in the image",
                )
            return expanded
        return value
