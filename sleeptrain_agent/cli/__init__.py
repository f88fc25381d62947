"""The `sleeptrain` command: one click group, a module per command group.

Known errors (`SleepTrainError`) become a one-line message and exit code 1;
set `SLEEPTRAIN_RAISE_ERRORS=1` to get the traceback instead. Anything else is
a bug and propagates with its traceback.
"""

from __future__ import annotations

import logging
import os

import click
from rich.logging import RichHandler

from sleeptrain_agent import __version__
from sleeptrain_agent.errors import SleepTrainError


class _Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except SleepTrainError as e:
            if os.environ.get("SLEEPTRAIN_RAISE_ERRORS"):
                raise
            raise click.ClickException(str(e)) from e


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sleeptrain")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def cli(verbose: int) -> None:
    """SleepTrain: a chat agent that learns from its conversations while it sleeps.

    Quick start: `sleeptrain chat` (starts the daemon if none runs).
    """
    level = logging.WARNING - 10 * min(verbose, 2)
    handler = RichHandler(show_path=False, level=level)
    logging.basicConfig(level=level, format="%(message)s", handlers=[handler], force=True)


def _register() -> None:
    from sleeptrain_agent.cli import chat, config_cmd, daemon, eval_cmd, memory, models, sleep, users

    for module in (chat, daemon, memory, users, sleep, eval_cmd, models, config_cmd):
        for command in module.COMMANDS:
            cli.add_command(command)


_register()


def main() -> None:
    cli(prog_name="sleeptrain")
