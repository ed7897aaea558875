"""The ``recsys`` command.

``main()`` runs the click group with ``standalone_mode=False`` and maps errors to exit codes:
a user error (bad config, bad data, unknown dataset, unreachable tracker) prints one line
``error: ...`` and exits 2; an interrupt exits 130; anything else is a bug, printed with its
traceback, exit 3.
"""

from __future__ import annotations

import logging
import sys
import traceback

import click

from recsys import __version__
from recsys.errors import RecsysError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="recsys")
@click.option("-v", "--verbose", count=True, envvar="RECSYS_VERBOSE", help="More log output.")
def cli(verbose: int) -> None:
    """Train, evaluate, tune and interpret recommender systems."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("recsys").setLevel(min(level, logging.INFO))


def _register_commands() -> None:
    from recsys.cli.data import data
    from recsys.cli.dnis import dnis
    from recsys.cli.export import export
    from recsys.cli.models import models
    from recsys.cli.probe import probe
    from recsys.cli.run import evaluate, recommend, train
    from recsys.cli.tune import tune

    for command in (train, evaluate, recommend, data, models, tune, probe, export, dnis):
        cli.add_command(command)


_register_commands()


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``recsys`` console script; returns the exit status."""
    try:
        # without standalone mode click returns the code of a command's ``Exit`` (tune's 130
        # for an interrupted search) instead of raising it
        status = cli.main(args=argv, prog_name="recsys", standalone_mode=False)
        if isinstance(status, int) and not isinstance(status, bool):
            return status
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.exceptions.NoArgsIsHelpError as exc:
        # `recsys` or `recsys data` alone: the help itself, as click prints it
        exc.show()
        return 2
    except click.UsageError as exc:
        # one line like every other user error, with where to look instead of click's usage
        path = exc.ctx.command_path if exc.ctx is not None else "recsys"
        click.echo(f"error: {exc.format_message()} (see '{path} --help')", err=True)
        return 2
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.Abort:
        click.echo("aborted", err=True)
        return 130
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return 130
    except RecsysError as exc:
        click.echo(f"error: {exc}", err=True)
        return 2
    except OSError as exc:
        # a path the user gave that cannot be written or read (a folder, a missing parent,
        # no permission, a full disk): the system's reason and the path say it all
        paths = " -> ".join(str(p) for p in (exc.filename, exc.filename2) if p)
        click.echo(f"error: {paths + ': ' if paths else ''}{exc.strerror or exc}", err=True)
        return 2
    except Exception:
        traceback.print_exc()
        click.echo("error: an internal error in recsys (a bug; the traceback is above)", err=True)
        return 3
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
