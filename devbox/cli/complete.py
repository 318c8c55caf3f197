"""Shell completion for bash, zsh and fish: `devbox completion SHELL` and `devbox __complete`.

The scripts call `devbox __complete SHELL WORD…` with the words of the command line up to
the cursor; it prints the candidates, one a line. It never runs a command: it only reads
this table, the profile folders and, for box names, one engine listing with a short
timeout. It is answered before typer is imported (fast.run), and the options here are kept
equal to the typer commands' by a unit test.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

SHELLS = ("bash", "zsh", "fish")
VALUE = ()  # an option that takes a value devbox cannot guess (the shell completes files)
FLAG = None  # an option that takes no value
Opts = dict[str, tuple[str, ...] | None]

_OVERRIDES: Opts = {
    "--image": VALUE,
    "--gpus": ("all", "none"),
    "--shm-size": VALUE,
    "--cpus": VALUE,
    "--memory": VALUE,
    "-p": VALUE,
    "--port": VALUE,
    "-v": VALUE,
    "--volume": VALUE,
    "-e": VALUE,
    "--env": VALUE,
}
_PROGRESS: Opts = {"--progress": ("auto", "plain", "quiet")}
_JSON: Opts = {"--json": FLAG}
_HOST: Opts = {"--host": VALUE}  # several servers (docs/hosts.md)
_ALL_HOSTS: Opts = {"--all-hosts": FLAG, "--timeout": VALUE}

# command path -> (its options, what its first argument is: profile, box, file, topic, shell, or "")
COMMANDS: dict[str, tuple[Opts, str]] = {
    "up": (
        {
            **_OVERRIDES,
            "--recreate": FLAG,
            "--keep-failed": FLAG,
            **_JSON,
            **_PROGRESS,
            **_HOST,
            "--no-wait": FLAG,  # a Slurm host's queue (docs/slurm.md)
            "--wait-timeout": VALUE,
        },
        "profile",
    ),
    "ls": (
        {
            "--all": FLAG,
            "-a": FLAG,
            **_JSON,
            "--owner": VALUE,
            "--gpu": VALUE,
            "--quiet": FLAG,
            "-q": FLAG,
            **_ALL_HOSTS,
            **_HOST,
        },
        "",
    ),
    "info": ({**_JSON, **_HOST}, "box"),
    "down": ({"--purge": FLAG, "--yes": FLAG, "-y": FLAG, **_JSON, **_HOST}, "box"),
    "rebuild": ({"--pull": FLAG, "--no-cache": FLAG, **_JSON, **_PROGRESS, **_HOST}, "box"),
    "switch": ({**_JSON, **_PROGRESS}, "profile"),
    "logs": ({"--follow": FLAG, "-f": FLAG, "--tail": VALUE, "-n": VALUE, **_HOST}, "box"),
    "exec": (_HOST, "box"),
    "env": ({**_JSON, **_HOST}, "box"),
    "ssh": (_HOST, "box"),
    "ssh-config": ({"--write": FLAG, **_JSON, **_HOST}, ""),
    "tunnel": (
        {"--port": VALUE, "-p": VALUE, **_HOST, "--background": FLAG, "--stop": FLAG, **_JSON},
        "box",
    ),
    "proxy": ({**_HOST}, "box"),
    "gpus": ({**_JSON, **_ALL_HOSTS, **_HOST}, ""),
    "hosts": ({**_JSON, "--timeout": VALUE}, ""),
    "doctor": (_JSON, ""),
    "prune": (
        {
            "--older-than": VALUE,
            "--all": FLAG,
            "-a": FLAG,
            "--yes": FLAG,
            "-y": FLAG,
            "--idle": FLAG,
            "--images": FLAG,
            **_JSON,
        },
        "",
    ),
    "image": ({}, ""),
    "image build": (
        {"--base": VALUE, "--tag": VALUE, "--no-cache": FLAG, **_JSON, **_PROGRESS},
        "",
    ),
    "policy": ({}, ""),
    "policy show": (_JSON, ""),
    "policy check": (_JSON, "file"),
    "lab": ({}, ""),
    "lab install": ({"--group": VALUE, "--admins": VALUE, "--engine": VALUE, **_JSON}, ""),
    "lab uninstall": (_JSON, ""),
    "lab status": (_JSON, ""),
    "render": (
        {
            "--format": ("docker", "json", "k8s"),
            "-f": ("docker", "json", "k8s"),
            **_OVERRIDES,
            **_JSON,
            **_HOST,
        },
        "profile",
    ),
    "profiles": (_JSON, ""),
    "profiles check": (_JSON, "file"),
    "version": (_JSON, ""),
    "completion": ({}, "shell"),
    "help": ({}, "topic"),
}
GLOBAL: Opts = {"--debug": FLAG, "--version": FLAG, "--help": FLAG, "-h": FLAG}
HELP: Opts = {"--help": FLAG, "-h": FLAG}
ENGINE_TIMEOUT_S = 1.0


def _command_path(words: Sequence[str]) -> tuple[str, list[str], bool]:
    """(command path, its arguments so far, whether `--` ended the options) for the typed words."""
    path = ""
    arguments: list[str] = []
    options = GLOBAL
    rest = list(words)
    while rest:
        word = rest.pop(0)
        if word == "--" and path:
            return path, arguments, True
        if word.startswith("-"):
            if "=" not in word and options.get(word, FLAG) is not FLAG and rest:
                rest.pop(0)  # the option's value
            continue
        group = f"{path} {word}".strip()
        if not arguments and group in COMMANDS:
            path, options = group, {**COMMANDS[group][0], **HELP}
        else:
            arguments.append(word)
    return path, arguments, False


def candidates(words: Sequence[str]) -> list[tuple[str, str]]:
    """What may come at the last of `words` (the word under the cursor), with a description."""
    if not words:
        words = [""]
    *typed, current = words
    path, arguments, ended = _command_path(typed)
    options = {**COMMANDS[path][0], **HELP} if path else GLOBAL
    if typed and not ended:
        choices = options.get(typed[-1], FLAG)
        if choices is not FLAG and "=" not in typed[-1]:
            return [(choice, "") for choice in choices]
    found: list[tuple[str, str]]
    if current.startswith("-") and not ended:
        found = [(name, "") for name in options]
    elif not path:
        from devbox.cli import fast

        found = [(name, summary) for name, summary in fast.COMMANDS]
    elif path in ("policy", "profiles", "lab", "image") and not arguments:
        found = [(sub.split()[1], "") for sub in COMMANDS if sub.startswith(path + " ")]
    elif arguments or ended:
        found = []
    else:
        found = _arguments(COMMANDS[path][1])
    return [(value, text) for value, text in found if value.startswith(current)]


def _arguments(kind: str) -> list[tuple[str, str]]:
    if kind == "profile":
        return [(name, "profile") for name in profile_names()]
    if kind == "box":
        return [(name, "box") for name in box_names()]
    if kind == "shell":
        return [(shell, "") for shell in SHELLS]
    if kind == "topic":
        from devbox.cli import fast
        from devbox.ui import topics

        return [*topics.TOPICS.items()] + [
            (name, "command") for name, _ in fast.COMMANDS if name not in topics.TOPICS
        ]
    return []  # a file: the shell's own completion takes over


def profile_names() -> list[str]:
    """The names `devbox up NAME` finds (project, user, lab, bundled)."""
    from devbox import settings
    from devbox.profile import loader

    try:
        return sorted({ref.name for ref in loader.discover(settings.from_environment())})
    except Exception:  # completion must never fail loudly: no candidates instead
        return []


def box_names() -> list[str]:
    """The caller's box names, if the engine answers within ENGINE_TIMEOUT_S."""
    from devbox import engine, settings

    try:
        boxes = engine.connect(timeout=ENGINE_TIMEOUT_S).list_boxes(settings.from_environment().owner)
    except Exception:  # no engine, a slow one: no candidates
        return []
    return sorted({box.name for box in boxes})


def complete(argv: Sequence[str]) -> int:
    """`devbox __complete SHELL WORD…` (words after the program name): print the candidates."""
    shell, words = (argv[0], argv[1:]) if argv else ("bash", [])
    lines = []
    for value, text in candidates(words):
        if shell == "fish" and text:
            lines.append(f"{value}\t{text}")
        elif shell == "zsh":
            lines.append(value.replace(":", r"\:") + (f":{text}" if text else ""))
        else:
            lines.append(value)
    if lines:
        sys.stdout.write("\n".join(lines) + "\n")
    return 0


BASH = r"""# bash completion for devbox: source <(devbox completion bash)
_devbox_complete() {
    local IFS=$'\n'
    COMPREPLY=($(devbox __complete bash "${COMP_WORDS[@]:1:COMP_CWORD}" 2>/dev/null))
}
complete -o default -F _devbox_complete devbox
"""

ZSH = r"""#compdef devbox
# zsh completion for devbox: devbox completion zsh > "${fpath[1]}/_devbox"
# (or, after compinit: source <(devbox completion zsh))
_devbox() {
    local -a found
    found=("${(@f)$(devbox __complete zsh "${(@)words[2,CURRENT]}" 2>/dev/null)}")
    found=(${found:#})
    if (( ${#found} )); then
        _describe -t devbox devbox found
    else
        _files
    fi
}
if [[ "${funcstack[1]}" == "_devbox" ]]; then
    _devbox "$@"
else
    compdef _devbox devbox
fi
"""

FISH = r"""# fish completion for devbox: devbox completion fish > ~/.config/fish/completions/devbox.fish
function __devbox_complete
    set -l words (commandline -opc)
    set -e words[1]
    set -l found (devbox __complete fish $words (commandline -ct) 2>/dev/null)
    if test (count $found) -gt 0
        printf '%s\n' $found
    else
        __fish_complete_path (commandline -ct)
    end
end
complete -c devbox -f -a '(__devbox_complete)'
"""

SCRIPTS = {"bash": BASH, "zsh": ZSH, "fish": FISH}
