"""The command's help, its reference in the docs, and the set-up the README gives."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from sriblob._cli import _parser, main

ROOT = Path(__file__).parent.parent
DOCS = ROOT / "docs"


def help_of(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """What ``sriblob ARGV --help`` prints."""
    with pytest.raises(SystemExit) as exited:
        main([*argv, "--help"])
    assert exited.value.code == 0
    return capsys.readouterr().out


def exit_rows_of_help(text: str) -> list[tuple[int, str]]:
    """The ``exit status:`` rows at the end of ``sriblob --help``, unwrapped."""
    _, found, table = text.partition("\nexit status:\n")
    assert found, "sriblob --help has no exit status table"
    rows: list[tuple[int, str]] = []
    for line in table.splitlines():
        if match := re.fullmatch(r"  (\d+) +(.+)", line):
            rows.append((int(match[1]), match[2]))
        else:
            code, meaning = rows[-1]
            rows[-1] = (code, f"{meaning} {line.strip()}")
    return rows


def exit_rows_of_docs(markdown: str) -> list[tuple[int, str]]:
    """The rows of the first ``| Status | Meaning |`` table in *markdown*."""
    _, found, rest = markdown.partition("| Status | Meaning |\n| --- | --- |\n")
    assert found, "no exit status table"
    rows = []
    for line in rest.splitlines():
        if not line.startswith("|"):
            break
        code, meaning = line.strip("| ").split(" | ")
        rows.append((int(code), meaning))
    return rows


def metavar(action: argparse.Action) -> str:
    """The metavar argparse shows for *action*."""
    if action.metavar is not None:
        return str(action.metavar)
    if action.choices is not None:
        return "{" + ",".join(str(c) for c in action.choices) + "}"
    return action.dest.upper()


def argument_rows(parser: argparse.ArgumentParser) -> list[str]:
    """The reference's table rows for *parser*'s arguments, from its own help."""
    rows = ["| Argument | Meaning |", "| --- | --- |"]
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
            continue
        if action.option_strings:
            cell = ", ".join(f"`{o}`" for o in action.option_strings)
            if action.nargs != 0:
                cell += f" `{metavar(action)}`"
        else:
            cell = f"`{metavar(action)}`"
        assert action.help, f"{action.dest} has no help"
        meaning = action.help.replace("<", "\\<")  # MyST would read an HTML tag
        rows.append(f"| {cell} | {meaning} |")
    return rows


def sections(markdown: str) -> dict[str, str]:
    """The ``## `sriblob NAME` `` sections of the reference, by NAME."""
    parts = re.split(r"^## `sriblob (\S+)`\n", markdown, flags=re.MULTILINE)
    return {
        name: body.strip() for name, body in zip(parts[1::2], parts[2::2], strict=True)
    }


class TestExitStatuses:
    """Every exit status is in --help, and the docs list the same ones."""

    def test_help_lists_every_status(self, capsys: pytest.CaptureFixture[str]) -> None:
        """--help lists 0, 1, 2, 75 (lease busy), 78, 130 and 143, in order."""
        rows = exit_rows_of_help(help_of([], capsys))

        assert [code for code, _ in rows] == [0, 1, 2, 75, 78, 130, 143]
        assert "maintenance lease" in dict(rows)[75]

    @pytest.mark.parametrize("page", ["cli.md", "quickstart.md"])
    def test_docs_table_matches_help(
        self, page: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """The page's exit status table says what --help says, row by row."""
        markdown = (DOCS / page).read_text(encoding="utf-8")

        assert exit_rows_of_docs(markdown) == exit_rows_of_help(help_of([], capsys))


class TestReference:
    """docs/cli.md says what --help says, for the command and each subcommand."""

    def test_global_options(self) -> None:
        """The global options table is the top-level parser's."""
        markdown = (DOCS / "cli.md").read_text(encoding="utf-8")
        _, _, after = markdown.partition("## Options of every command\n\n")

        assert after.split("\n\n", 1)[0].splitlines() == argument_rows(_parser())

    def test_every_subcommand(self) -> None:
        """Each subcommand has a section: its summary, description and arguments."""
        parser = _parser()
        [commands] = [
            a for a in parser._actions if isinstance(a, argparse._SubParsersAction)
        ]
        summaries = {a.dest: a.help for a in commands._choices_actions}
        documented = sections((DOCS / "cli.md").read_text(encoding="utf-8"))

        assert list(documented) == list(commands.choices)
        for name, subparser in commands.choices.items():
            expected = [f"{summaries[name]}."]
            if subparser.description:
                expected.append(subparser.description)
            expected.append("\n".join(argument_rows(subparser)))
            assert documented[name] == "\n\n".join(expected), name

    def test_subcommand_help_shows_the_same_arguments(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Sriblob cache --help shows the --max-bytes SIZE the reference documents."""
        text = help_of(["cache"], capsys)

        assert "--max-bytes SIZE" in text
        assert "`--max-bytes` `SIZE`" in (DOCS / "cli.md").read_text(encoding="utf-8")


class TestInstall:
    """The docs install sriblob from a checkout or git until a release exists."""

    def test_no_bare_pip_install(self) -> None:
        """No page tells a user to `pip install sriblob` from an index."""
        pages = [ROOT / "README.md", *DOCS.glob("*.md")]
        bare = re.compile(r"pip install (--\S+ )*'?sriblob(\[[a-z,]+\])?'?\s*$")

        offending = [
            f"{page.name}: {line.strip()}"
            for page in pages
            for line in page.read_text(encoding="utf-8").splitlines()
            if line.lstrip().startswith("$") and bare.search(line.split("#")[0])
        ]

        assert offending == []

    def test_quickstart_installs_from_a_checkout_or_git(self) -> None:
        """The quickstart's install commands name a checkout or a git URL."""
        quickstart = (DOCS / "quickstart.md").read_text(encoding="utf-8")
        _, _, section = quickstart.partition("## Install\n")
        section = section.split("\n## ", 1)[0]
        installs = [
            line.split("#")[0].strip().removeprefix("$ ")
            for line in section.splitlines()
            if line.startswith("$") and "pip install" in line
        ]

        assert "python -m pip install ./sriblob" in installs
        assert "python -m pip install 'sriblob @ git+REPOSITORY-URL'" in installs
        assert "no release on PyPI yet" in section
        for line in installs:
            assert "./sriblob" in line or "@ git+" in line, line
