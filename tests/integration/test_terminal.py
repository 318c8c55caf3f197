"""Must show (issue 8, terminal and shell conventions) on a real engine: a closed pipe is a quiet
exit, steps are plain lines in a log, NO_COLOR tables, shell completion that runs nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.integration.conftest import RUN_ID, TEST_LABEL, Caller, docker, needs_tool

CHEAP_IMAGE = "devbox/debian:bookworm"
DEVBOX = f"{sys.executable} -m devbox"


def make_boxes(caller: Caller, names: list[str]) -> None:
    """Containers `ls` lists as the caller's boxes (created, never started: cheap)."""

    def create(name: str) -> None:
        docker(
            "create",
            "--name",
            caller.container(name),
            "--label",
            f"devbox.owner={caller.owner}",
            "--label",
            f"devbox.box={name}",
            "--label",
            f"{TEST_LABEL}={RUN_ID}",
            CHEAP_IMAGE,
            "sleep",
            "infinity",
        )

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(create, names))


def owned(caller: Caller) -> list[str]:
    """Names of every container (any state) labelled with the caller as owner."""
    listing = docker("ps", "-a", "--filter", f"label=devbox.owner={caller.owner}", "--format", "{{.Names}}")
    return sorted(listing.stdout.split())


def shell(caller: Caller, script: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    """Run a bash script as the caller, with `devbox` on PATH (this interpreter's devbox)."""
    bin_dir = tmp / "bin"
    bin_dir.mkdir(exist_ok=True)
    wrapper = bin_dir / "devbox"
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} -m devbox "$@"\n')
    wrapper.chmod(0o755)
    env = {**caller.environ, "PATH": f"{bin_dir}:{caller.environ.get('PATH', '/usr/bin:/bin')}"}
    return subprocess.run(
        ["bash", "-c", script], cwd=caller.cwd, env=env, capture_output=True, text=True, timeout=120
    )


# --- a closed pipe ----------------------------------------------------------------------------


def test_ls_into_a_closed_pipe_is_a_quiet_exit_as_for_docker(caller: Caller, tmp_path: Path) -> None:
    names = [f"b{i:02d}" for i in range(60)]
    make_boxes(caller, names)
    assert caller.devbox("ls", "-q").stdout.split() == names

    # As typed: `devbox ls | head -1`. devbox may finish writing before head exits (0) or not (141).
    done = shell(caller, f"set -o pipefail; {DEVBOX} ls 2>err | head -1; echo ${{PIPESTATUS[0]}}", tmp_path)
    header, status = done.stdout.splitlines()
    assert header.split()[:2] == ["NAME", "STATUS"] and status in ("0", "141")
    assert (caller.cwd / "err").read_text() == ""

    # A reader that is gone before devbox writes: the broken pipe every time.
    def into_closed_pipe(command: str) -> tuple[str, str]:
        result = shell(caller, f"{command} 2>err | (exec 0<&-; sleep 1); echo ${{PIPESTATUS[0]}}", tmp_path)
        return result.stdout.strip(), (caller.cwd / "err").read_text()

    docker_status, docker_err = into_closed_pipe(f"docker ps -a --filter label=devbox.owner={caller.owner}")
    assert (docker_status, docker_err) == ("141", "")  # docker dies of SIGPIPE: so does devbox
    for args in ("ls", "ls --json", "ls -q", "--debug ls", "--debug ls --json", "ls --all", ""):
        assert into_closed_pipe(f"{DEVBOX} {args}") == (docker_status, ""), args

    top = shell(caller, f"set -o pipefail; {DEVBOX} 2>err | head -3; echo ${{PIPESTATUS[0]}}", tmp_path)
    *lines, status = top.stdout.splitlines()
    assert lines[0].startswith("Usage: devbox") and len(lines) == 3 and status in ("0", "141")
    assert (caller.cwd / "err").read_text() == ""


# --- steps in a log ---------------------------------------------------------------------------


def test_up_without_a_terminal_writes_one_line_per_step(caller: Caller, tmp_path: Path) -> None:
    context = caller.cwd / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM devbox/devbox:0.1\n")
    profile = caller.write_profile(
        "stepbox",
        "build: ctx\nuser: host\nports: {jupyter: 8888, ssh: 22}\nready: {timeout: 90}",
    )
    try:
        done = shell(caller, f"{DEVBOX} up {profile} >out.txt 2>err.txt", tmp_path)
        assert done.returncode == 0, (caller.cwd / "err.txt").read_text()
        lines = (caller.cwd / "err.txt").read_text().splitlines()
        assert "\x1b" not in "".join(lines)
        assert lines[0].startswith(f"building devbox/{caller.owner}-stepbox:")
        steps = [line for line in lines if line.startswith(("building ", "creating ", "waiting ", "ready"))]
        assert steps == [
            lines[0],
            f"creating {caller.container('stepbox')}",
            "waiting for jupyter URL, ssh login",
            "ready",
        ]
        assert "jupyter" in (caller.cwd / "out.txt").read_text()

        # Running already: nothing to do but say so. quiet: nothing at all. plain with --json:
        # the lines on stderr, the one JSON object on stdout.
        again = caller.devbox("up", str(profile))
        assert again.stderr == "ready\n"
        assert caller.devbox("up", str(profile), "--progress", "quiet").stderr == ""
        assert caller.devbox("up", str(profile), "--json").stderr == ""
        plain = caller.devbox("up", str(profile), "--json", "--progress", "plain")
        assert json.loads(plain.stdout)["action"] == "running" and plain.stderr == "ready\n"
    finally:
        caller.devbox("down", "stepbox", check=False)
        images = docker("images", "-q", f"devbox/{caller.owner}-stepbox", check=False).stdout.split()
        if images:
            docker("rmi", "-f", *images, check=False)


# --- NO_COLOR ---------------------------------------------------------------------------------


@needs_tool("script")
@pytest.mark.parametrize(("args", "shown"), [("ls", "colour"), ("gpus", "declared")])
def test_no_color_tables_under_a_terminal(caller: Caller, args: str, shown: str) -> None:
    make_boxes(caller, ["colour"])

    def under_a_terminal(**env: str) -> str:
        environ = {**caller.environ, "TERM": "xterm-256color", "DEVBOX_GPU_INVENTORY": "2", **env}
        if "NO_COLOR" not in env:
            environ.pop("NO_COLOR", None)
        command = ["script", "-qec", f"{DEVBOX} {args}", "/dev/null"]
        return subprocess.run(command, cwd=caller.cwd, env=environ, capture_output=True, text=True).stdout

    assert "\x1b[1m" in under_a_terminal()  # a terminal gets a bold header...
    for env in ({"NO_COLOR": "1"}, {"TERM": "dumb"}):
        table = under_a_terminal(**env)
        assert shown in table and "\x1b" not in table, env  # ...NO_COLOR and TERM=dumb do not


@needs_tool("script")
def test_no_color_up_under_a_terminal_draws_no_spinner(caller: Caller) -> None:
    # A spinner redraws its line with cursor escapes: under NO_COLOR, up prints plain steps.
    profile = caller.write_profile("nocolor", "image: devbox/box:0.1\nports: {jupyter: 8888}")
    environ = {**caller.environ, "TERM": "xterm-256color", "NO_COLOR": "1"}
    try:
        command = ["script", "-qec", f"{DEVBOX} up {profile}", "/dev/null"]
        done = subprocess.run(command, cwd=caller.cwd, env=environ, capture_output=True, text=True)
        assert "token=" in done.stdout and "\x1b" not in done.stdout, done.stdout
        assert "waiting for jupyter URL" in done.stdout  # the steps, as lines
    finally:
        caller.devbox("down", "nocolor", check=False)


# --- shell completion -------------------------------------------------------------------------


def test_bash_completion_offers_profiles_and_boxes_and_runs_nothing(caller: Caller, tmp_path: Path) -> None:
    (caller.cwd / ".devbox").mkdir()
    (caller.cwd / ".devbox" / "projbox.yaml").write_text("image: x\n")
    make_boxes(caller, ["mybox"])
    before = owned(caller)
    script = """
source <(devbox completion bash)
reply() {
    COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 )); COMPREPLY=()
    _devbox_complete; echo "${COMPREPLY[*]}"
}
reply devbox up ""
reply devbox down ""
reply devbox do
reply devbox up --progress ""
"""
    done = shell(caller, script, tmp_path)
    assert done.returncode == 0, done.stderr
    up, down, commands, progress = (line.split() for line in done.stdout.splitlines())
    assert {"default", "pytorch-gpu", "projbox"} <= set(up)
    assert down == ["mybox"]
    assert commands == ["down", "doctor"]
    assert progress == ["auto", "plain", "quiet"]
    # An old click-style completion request, with the command line it completes: nothing runs.
    shell(caller, "_DEVBOX_COMPLETE=bash_complete devbox up default", tmp_path)
    assert owned(caller) == before  # completing `devbox up` made no box


@needs_tool("zsh")
def test_zsh_completion_offers_profiles_and_boxes(caller: Caller, tmp_path: Path) -> None:
    make_boxes(caller, ["zbox"])
    # The completion system's builtins stubbed: this checks our function, not zsh's compsys.
    script = """
exec zsh -fc '
compdef() { :; }; _describe() { print -l -- ${(P)4}; }; _files() { print FILES; }
source <(devbox completion zsh)
words=(devbox up ""); CURRENT=3; _devbox
words=(devbox down ""); CURRENT=3; _devbox
words=(devbox profiles check ""); CURRENT=4; _devbox
'
"""
    done = shell(caller, script, tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "default:profile" in lines and "zbox:box" in lines and lines[-1] == "FILES"


@needs_tool("fish")
def test_fish_completion_offers_profiles_and_boxes(caller: Caller, tmp_path: Path) -> None:
    make_boxes(caller, ["fbox"])
    script = """exec fish -c '
devbox completion fish | source
complete -C "devbox up "
complete -C "devbox down "
'"""
    env_home = {"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / ".config")}
    caller.environ.update(env_home)
    done = shell(caller, script, tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "default\tprofile" in lines and "fbox\tbox" in lines


def test_version_json_names_the_engine(caller: Caller) -> None:
    data = json.loads(caller.devbox("version", "--json").stdout)
    assert data["engine"]["host"] == os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    assert data["engine"]["version"] == docker("version", "--format", "{{.Server.Version}}").stdout.strip()
