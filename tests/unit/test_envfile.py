"""env_file: compose's .env dialect (profile/envfile.py), and a bad line located at its line."""

from __future__ import annotations

import pytest

from devbox.errors import InvalidInput
from devbox.profile import envfile, loader
from tests.conftest import Sandbox

DIALECT = """\
# a comment line
   # an indented one

export EXPORTED=1
SPACED = around the equals \t
UNQUOTED=x #a comment after a space
HASH=x#not-a-comment
EMPTY=
SINGLE='kept $AS \\n written \\' quote'
DOUBLE="tab\\there\\nnew \\"q\\" \\$HOME back\\\\slash"
MULTI="first
second" # a comment after the quote
YAML.style-key[0]: colon form
DOLLAR=${NOT_EXPANDED}
CRLF=windows\r
"""


def test_the_compose_dialect() -> None:
    assert envfile.parse(DIALECT) == {
        "EXPORTED": "1",
        "SPACED": "around the equals",
        "UNQUOTED": "x",
        "HASH": "x#not-a-comment",
        "EMPTY": "",
        "SINGLE": "kept $AS \\n written ' quote",
        "DOUBLE": 'tab\there\nnew "q" $HOME back\\slash',
        "MULTI": "first\nsecond",
        "YAML.style-key[0]": "colon form",
        "DOLLAR": "${NOT_EXPANDED}",
        "CRLF": "windows",
    }


def test_a_backslash_in_single_quotes_takes_the_next_character_as_compose_does() -> None:
    # compose-go: 'a\\' is a\\ (two backslashes), the second one escaping no quote.
    assert envfile.parse("A='a\\\\'\nB='c:\\dir\\'x'\n") == {"A": "a\\\\", "B": "c:\\dir'x"}


def test_later_lines_win_and_a_bom_is_no_part_of_the_first_key() -> None:
    assert envfile.parse("\ufeffA=1\nA=2\n") == {"A": "2"}


@pytest.mark.parametrize(
    ("text", "line", "column", "said"),
    [
        ("OK=1\nNOVALUE\n", 2, 1, "NOVALUE has no value (no '=')"),
        ("OK=1\nMY KEY=1\n", 2, 4, "unexpected character 'K' after the name 'MY'"),
        ("OK=1\n=1\n", 2, 1, "unexpected character '=': a line starts with a KEY"),
        ("OK=1\n  A!=1\n", 2, 4, "unexpected character '!' after the name 'A'"),
        ("A='never closed\nB=2\n", 1, 1, "unterminated quoted value (the ' opened here is never closed)"),
        ('A="x"  junk\n', 1, 8, "text after the closing \": 'junk'"),
    ],
)
def test_a_bad_line_is_located(text: str, line: int, column: int, said: str) -> None:
    with pytest.raises(envfile.EnvFileError) as caught:
        envfile.parse(text)
    assert (caught.value.line, caught.value.column, caught.value.message) == (line, column, said)
    assert caught.value.fix


def test_a_profile_with_a_bad_env_file_points_at_the_files_line(sandbox: Sandbox) -> None:
    env = sandbox.write("work/app.env", "A=1\n\nexport B C=2\n")
    sandbox.write("work/p.yaml", "image: x\nenv_file: app.env\n")
    with pytest.raises(InvalidInput) as caught:
        loader.load("p.yaml", sandbox.settings())
    (problem,) = caught.value.problems
    assert (problem.origin.source, problem.origin.line) == (str(env), 3)
    assert problem.message == "env file: unexpected character 'C' after the name 'B'"
    assert "KEY=VALUE" in (problem.hint or "")


def test_load_names_the_file_and_line(sandbox: Sandbox) -> None:
    env = sandbox.write("work/app.env", "A=1\nB\n")
    with pytest.raises(InvalidInput) as caught:
        envfile.load(str(env))
    assert caught.value.message == f"env file {env} has a bad line"
    assert caught.value.problems[0].origin.line == 2
