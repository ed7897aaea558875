"""``main()`` returns a command's own exit status: ``recsys tune`` ends an interrupted search
with ``click.exceptions.Exit(130)``, which click hands back as a return value (not an
exception) outside standalone mode."""

from __future__ import annotations

import click
import pytest

from recsys.cli import cli, main


@pytest.fixture
def command():
    @click.command("exit-with")
    @click.argument("code", type=int)
    def exit_with(code: int) -> None:
        raise click.exceptions.Exit(code)

    cli.add_command(exit_with)
    yield "exit-with"
    cli.commands.pop("exit-with")


@pytest.mark.parametrize("code", [0, 1, 130])
def test_a_commands_exit_code_is_mains_return_value(command, code):
    assert main([command, str(code)]) == code


@pytest.mark.parametrize(
    "args",
    [
        ["probe", "nowhere", "--epochs", "-1"],
        ["train", "--no-such-option"],
        ["no-such-command"],
    ],
)
def test_a_usage_error_is_one_line_naming_the_help(args, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    assert "--help'" in err


@pytest.mark.parametrize("args", [[], ["data"]])
def test_a_group_without_a_command_prints_its_help(args, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("Usage: recsys") and "error:" not in err
