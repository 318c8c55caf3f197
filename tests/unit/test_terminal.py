"""Terminal and shell conventions (issue 8): closed pipes, plain progress, NO_COLOR, completion,
examples in every --help, version, help topics."""

from __future__ import annotations

import ast
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

import devbox
from devbox.cli import complete, examples, fast, meta, shared
from devbox.cli.commands import app
from devbox.engine.base import PullEvent
from devbox.ui import term, topics
from devbox.ui.steps import PlainReporter
from tests.conftest import Sandbox

runner = CliRunner()
REPO = Path(__file__).resolve().parents[2]
NO_ENGINE = "unix:///nonexistent/devbox-test-no-engine.sock"


def typer_commands() -> dict[str, Any]:
    """Every command path ("up", "policy show") -> its click command, groups included."""
    found: dict[str, Any] = {}
    for name, command in typer.main.get_command(app).commands.items():  # type: ignore[attr-defined]
        found[name] = command
        for sub, inner in getattr(command, "commands", {}).items():
            found[f"{name} {sub}"] = inner
    return found


def options_of(command: Any) -> set[str]:
    return {opt for param in command.params for opt in (*param.opts, *param.secondary_opts) if opt[:1] == "-"}


def devbox_cli(
    *args: str, env: dict[str, str] | None = None, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "devbox", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "DOCKER_HOST": NO_ENGINE, **(env or {})},
        **kwargs,
    )


# --- a closed pipe --------------------------------------------------------------------------


def run_into_closed_pipe(args: list[str], cwd: Path) -> subprocess.CompletedProcess[bytes]:
    """Run devbox with stdout a pipe nobody reads any more (as after `| head -1` is done)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(
            [sys.executable, "-m", "devbox", *args],
            stdout=write_end,
            stderr=subprocess.PIPE,
            cwd=cwd,
            env={**os.environ, "DOCKER_HOST": NO_ENGINE},
            timeout=60,
        )
    finally:
        os.close(write_end)


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],  # the fast path
        ["version", "--json"],  # fast path, JSON
        ["profiles"],  # typer and rich
        ["profiles", "--json"],  # typer, JSON
        ["up", "--help"],  # typer's own help
        ["help", "cli"],  # a long guide
    ],
)
def test_a_closed_pipe_ends_devbox_quietly_as_sigpipe_ends_git(args: list[str], sandbox: Sandbox) -> None:
    result = run_into_closed_pipe(args, sandbox.cwd)
    assert result.stderr == b""
    assert result.returncode == -signal.SIGPIPE  # a shell shows 141, as for `git log | head -1`


def test_the_pipe_guard_ends_only_on_stdout_not_on_other_broken_pipes() -> None:
    # A socket peer going away stays an error devbox reports; only fd 1 and 2 end it quietly.
    code = (
        "import sys\nfrom devbox.cli import pipes\npipes.install()\n"
        "try:\n    raise BrokenPipeError(32, 'socket')\nexcept BrokenPipeError:\n    print('caught')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout == "caught\n"


# --- progress ---------------------------------------------------------------------------------


def test_plain_progress_is_one_line_per_step_then_ready(capsys: pytest.CaptureFixture[str]) -> None:
    with PlainReporter() as progress:
        progress.step("building devbox/alice-x:1")
        progress.build_line("Step 1/1 : FROM debian")
        progress.build_line("   ")
        progress.step("creating devbox-alice-x")
        progress.pull_event(PullEvent("Downloading", "abc", 1, 10))
        progress.pull_event(PullEvent("Waiting", "abc"))
        progress.pull_event(PullEvent("Pull complete", "abc"))
        progress.pull_event(PullEvent("Status: Downloaded newer image for x"))
        progress.step("waiting for jupyter URL, ssh login")
        progress.log_line("the box's own log is not repeated")
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        "building devbox/alice-x:1",
        "Step 1/1 : FROM debian",
        "creating devbox-alice-x",
        "abc: Pull complete",
        "Status: Downloaded newer image for x",
        "waiting for jupyter URL, ssh login",
        "ready",
    ]


def test_a_failed_operation_does_not_say_ready(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(RuntimeError), PlainReporter() as progress:
        progress.step("creating devbox-alice-x")
        raise RuntimeError("boom")
    assert capsys.readouterr().err == "creating devbox-alice-x\n"


class FakeStream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.mark.parametrize(
    ("tty", "term_name", "json_output", "progress", "expected"),
    [
        (True, "xterm", False, "auto", "RichReporter"),
        (True, "xterm", True, "auto", "RichReporter"),
        (True, "dumb", False, "auto", "PlainReporter"),
        (False, "xterm", False, "auto", "PlainReporter"),
        (False, "xterm", True, "auto", "QuietReporter"),
        (True, "xterm", False, "plain", "PlainReporter"),
        (False, "xterm", True, "plain", "PlainReporter"),
        (True, "xterm", False, "quiet", "QuietReporter"),
    ],
)
def test_progress_auto_plain_quiet(
    monkeypatch: pytest.MonkeyPatch,
    tty: bool,
    term_name: str,
    json_output: bool,
    progress: str,
    expected: str,
) -> None:
    monkeypatch.setattr(sys, "stderr", FakeStream(tty))
    monkeypatch.setenv("TERM", term_name)
    assert type(shared.reporter(json_output, progress)).__name__ == expected


def test_progress_is_an_option_of_up_rebuild_switch_with_the_same_choices() -> None:
    commands = typer_commands()
    for name in ("up", "rebuild", "switch"):
        (param,) = [p for p in commands[name].params if "--progress" in p.opts]
        assert tuple(param.type.choices) == term.PROGRESS_MODES
    for mode in term.PROGRESS_MODES:
        parsed = fast._up_args(["up", "--progress", mode])
        assert parsed is not None and parsed["progress"] == mode
    assert fast._up_args(["up", "--progress=quiet"])["progress"] == "quiet"  # type: ignore[index]
    assert fast._up_args(["up"])["progress"] == "auto"  # type: ignore[index]
    assert fast._up_args(["up", "--progress", "fancy"]) is None  # typer names the choices


# --- NO_COLOR, TERM=dumb ----------------------------------------------------------------------


def test_no_color_and_dumb_terminals_get_no_styles(monkeypatch: pytest.MonkeyPatch) -> None:
    tty = FakeStream(True)
    assert term.styled(tty, {"TERM": "xterm"})
    assert not term.styled(tty, {"TERM": "xterm", "NO_COLOR": "1"})
    assert term.styled(tty, {"TERM": "xterm", "NO_COLOR": ""})  # no-color.org: empty means unset
    assert not term.styled(tty, {"TERM": "dumb"})
    assert not term.styled(FakeStream(False), {"TERM": "xterm"})
    monkeypatch.setenv("NO_COLOR", "1")
    console = shared.stdout()
    console.file = tty
    console.print("[bold red]error:[/] x")
    assert "\x1b" not in tty.getvalue()


needs_script = pytest.mark.skipif(shutil.which("script") is None, reason="needs script(1) for a pty")


def under_a_terminal(command: str, cwd: Path, **env: str) -> str:
    """What `command` prints under a pseudo-terminal (script -qc), stdout and stderr together."""
    environ = {**os.environ, "DOCKER_HOST": NO_ENGINE, "TERM": "xterm-256color", "COLUMNS": "100", **env}
    environ.pop("NO_COLOR", None) if "NO_COLOR" not in env else None
    result = subprocess.run(
        ["script", "-qec", command, "/dev/null"],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=environ,
        timeout=60,
    )
    return result.stdout


@needs_script
@pytest.mark.parametrize(
    "args",
    ["profiles", "up --help", "render nosuchprofile", "--help", "help", "gpus"],
    ids=["table", "typer-help", "error", "fast-help", "help-topics", "gpus-error"],
)
def test_no_color_under_a_terminal_prints_no_escape_sequence(args: str, sandbox: Sandbox) -> None:
    command = f"{sys.executable} -m devbox {args}"
    assert "\x1b" not in under_a_terminal(command, sandbox.cwd, NO_COLOR="1")
    assert "\x1b" not in under_a_terminal(command, sandbox.cwd, TERM="dumb")


@needs_script
def test_without_no_color_a_terminal_gets_styles(sandbox: Sandbox) -> None:
    # The check above can fail: the same commands do style a capable terminal.
    for args in ("profiles", "render nosuchprofile"):
        assert "\x1b[" in under_a_terminal(f"{sys.executable} -m devbox {args}", sandbox.cwd)


# --- completion -----------------------------------------------------------------------------


def test_completion_knows_every_command_and_its_options() -> None:
    commands = typer_commands()
    assert set(complete.COMMANDS) == set(commands)
    for path, (options, _) in complete.COMMANDS.items():
        assert set(options) == options_of(commands[path]) - {"--help", "-h"}, path
    for path, (options, _) in complete.COMMANDS.items():
        for option, choices in options.items():
            (param,) = [p for p in commands[path].params if option in p.opts]
            typer_choices = getattr(param.type, "choices", None)
            if typer_choices is not None:
                assert tuple(choices or ()) == tuple(typer_choices), (path, option)
            assert (choices is complete.FLAG) == param.is_flag, (path, option)


def test_completion_candidates(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    sandbox.write("work/.devbox/mine.yaml", "image: x\n")
    monkeypatch.setattr(complete, "box_names", lambda: ["alpha", "beta"])

    def values(*words: str) -> list[str]:
        return [value for value, _ in complete.candidates(list(words))]

    assert values("") == [name for name, _ in fast.COMMANDS]
    assert values("d") == ["down", "doctor"]
    assert values("up", "") == ["default", "mine", "pytorch-gpu"]
    assert values("up", "--json", "py") == ["pytorch-gpu"]
    assert values("down", "") == ["alpha", "beta"]
    assert values("down", "alpha", "") == []  # one box name only
    assert values("exec", "alpha", "--", "") == []
    assert values("up", "--progress", "") == ["auto", "plain", "quiet"]
    assert values("up", "--image", "") == []  # a free value: the shell completes files
    assert values("up", "--image", "x", "") == ["default", "mine", "pytorch-gpu"]
    assert values("up", "--pro") == ["--progress"]
    assert values("render", "-f", "") == ["docker", "json", "k8s"]
    assert values("policy", "") == ["show", "check"]
    assert values("profiles", "check", "") == []  # files
    assert values("completion", "") == ["bash", "zsh", "fish"]
    assert values("help", "p") == ["profiles", "policy", "proxy", "prune"]
    assert values("--debug", "lo") == ["logs"]
    assert values("--") == ["--debug", "--version", "--help"]


def test_complete_prints_shell_formats(capsys: pytest.CaptureFixture[str]) -> None:
    complete.complete(["fish", "versi"])
    assert capsys.readouterr().out == f"version\t{dict(fast.COMMANDS)['version']}\n"
    complete.complete(["zsh", "versi"])
    assert capsys.readouterr().out == f"version:{dict(fast.COMMANDS)['version']}\n"
    complete.complete(["bash", "versi"])
    assert capsys.readouterr().out == "version\n"


def test_a_completion_request_never_runs_a_command(sandbox: Sandbox) -> None:
    # An old click-style script sets _DEVBOX_COMPLETE; running `up` for it would make a box.
    result = devbox_cli("up", "default", env={"_DEVBOX_COMPLETE": "bash_complete"}, cwd=sandbox.cwd)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    # `__complete` asks an engine that is not there: no candidates, no error, fast.
    result = devbox_cli("__complete", "bash", "down", "", cwd=sandbox.cwd, timeout=10)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


@pytest.mark.parametrize("shell", complete.SHELLS)
def test_completion_prints_each_shells_script(shell: str) -> None:
    result = runner.invoke(app, ["completion", shell])
    assert result.exit_code == 0 and "__complete" in result.stdout
    assert devbox_cli("completion", shell).stdout == complete.SCRIPTS[shell]
    assert runner.invoke(app, ["completion", "tcsh"]).exit_code == 2


def test_completion_scripts_parse(tmp_path: Path) -> None:
    script = tmp_path / "devbox.bash"
    script.write_text(complete.BASH)
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    for shell, text in (("zsh", complete.ZSH), ("fish", complete.FISH)):
        if shutil.which(shell):
            path = tmp_path / f"devbox.{shell}"
            path.write_text(text)
            assert subprocess.run([shell, "-n", str(path)]).returncode == 0


# --- help: summaries, examples, topics -------------------------------------------------------


def test_every_docstring_first_line_is_the_summary_fast_help_shows() -> None:
    summaries = dict(fast.COMMANDS)
    for info in app.registered_commands:
        name = info.name or info.callback.__name__.replace("_", "-")  # type: ignore[union-attr]
        assert (info.callback.__doc__ or "").splitlines()[0] == summaries[name], name  # type: ignore[union-attr]
    for group in app.registered_groups:
        assert group.typer_instance is not None
        assert group.typer_instance.info.help == summaries[str(group.name)]


@pytest.mark.parametrize("path", sorted(examples.EXAMPLES))
def test_every_help_ends_with_two_or_three_examples(path: str) -> None:
    rows = examples.EXAMPLES[path]
    assert 2 <= len(rows) <= 3
    assert all(f"devbox {path}".strip() in line and "[" not in line + what for line, what in rows)
    result = runner.invoke(app, [*path.split(), "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    tail = [line.strip() for line in result.stdout.rstrip().splitlines()]
    expected = [line.strip() for line in examples.lines(path)]
    assert tail[-len(expected) :] == expected


def test_examples_cover_every_command() -> None:
    assert set(examples.EXAMPLES) == set(typer_commands()) | {""}
    assert fast.help_text().count("  devbox ") >= 3


def test_help_topics_are_the_bundled_guides(capsys: pytest.CaptureFixture[str]) -> None:
    for topic in topics.TOPICS:
        text = topics.text(topic)
        assert text is not None and text.startswith("# ")
    assert meta.run(["help"]) == 0
    listing = capsys.readouterr().out
    assert all(f"  {topic} " in listing for topic in topics.TOPICS)
    assert meta.run(["help", "gpus"]) == 0
    assert capsys.readouterr().out == (REPO / "docs" / "gpus.md").read_text()
    assert meta.run(["help", "up"]) is None  # a command: typer prints its --help
    result = runner.invoke(app, ["help", "up"])
    assert result.exit_code == 0 and "Usage: devbox up" in result.stdout
    result = runner.invoke(app, ["help", "nosuch"])
    assert result.exit_code != 0 and "devbox help" not in result.stdout


def test_the_wheel_carries_the_guides() -> None:
    text = (REPO / "pyproject.toml").read_text()
    assert '"docs" = "devbox/bundled_docs"' in text


def test_no_message_points_at_a_repository_path() -> None:
    """Hints and help name `devbox help TOPIC`; a pip user has no docs/ folder."""
    package = Path(devbox.__file__).parent
    found = []
    for path in package.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))
            and node.body
            and isinstance(node.body[0], ast.Expr)
            and isinstance(node.body[0].value, ast.Constant)
        }
        # Patterns that recognise such paths (to rewrite them) are not messages.
        patterns = {
            id(arg)
            for node in ast.walk(tree)
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "compile"
            for arg in ast.walk(node)
        }
        for node in ast.walk(tree):
            text = node.value if isinstance(node, ast.Constant) else None
            quiet = id(node) in docstrings or id(node) in patterns
            if isinstance(text, str) and not quiet and "docs/" in text and ".md" in text:
                found.append(f"{path.name}:{node.lineno}")
    assert found == []


@pytest.mark.parametrize("topic", sorted(topics.TOPICS))
def test_help_topics_send_a_pip_user_to_topics_not_to_docs_paths(topic: str) -> None:
    guide = topics.text(topic)
    assert guide is not None and "docs/" not in guide
    assert re.search(r"(?<![\w/])(profiles|policy|gpus|image|cli)\.md\b", guide) is None


# --- version, ls -q ---------------------------------------------------------------------------


def test_version_json_without_an_engine(sandbox: Sandbox) -> None:
    result = devbox_cli("version", "--json", cwd=sandbox.cwd, timeout=30)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["version"] == devbox.__version__
    assert data["python"] == ".".join(map(str, sys.version_info[:3]))
    assert data["engine"] is None
    plain = devbox_cli("version", cwd=sandbox.cwd, timeout=30)
    assert plain.stdout.splitlines()[0] == f"devbox {devbox.__version__}"
    assert devbox_cli("--version").stdout == f"devbox {devbox.__version__}\n"
    assert runner.invoke(app, ["version", "--json"]).exit_code == 0


def test_ls_quiet_is_read_by_both_parsers() -> None:
    assert fast._ls_args(["ls", "-q"]) == (False, False, None, None, True)
    assert fast._ls_args(["ls", "--quiet", "--all"]) == (True, False, None, None, True)
    ls_options = options_of(typer_commands()["ls"]) - {"--help", "-h"}
    assert fast._LS_FLAGS | {"--owner", "--gpu"} == ls_options
