"""`sleeptrain config`: print the resolved configuration."""

from __future__ import annotations

import click
import yaml

from sleeptrain_agent.cli.common import App, emit_json, state_options
from sleeptrain_agent.config import model_dir
from sleeptrain_agent.dtypes import describe


@click.command("config")
@state_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of YAML.")
def config_command(app: App, as_json: bool) -> None:
    """Show the configuration after flags, SLEEPTRAIN_* env and YAML are applied.

    Example: SLEEPTRAIN_STORE__BUSY_TIMEOUT_MS=2000 sleeptrain config
    """
    data = {
        "config_file": str(app.config_file or ""),
        "state_dir": str(app.state_dir),
        "model_dir": str(model_dir(app.settings)),
        **app.settings.model_dump(mode="json"),
        # what `auto` means on this machine (sleeptrain_agent/dtypes.py)
        "resolved": {"model.dtype": describe(app.settings.model.dtype),
                     "vllm.dtype": describe(app.settings.vllm.dtype, serving=True)},
    }
    if as_json:
        emit_json(data)
    else:
        click.echo(yaml.safe_dump(data, sort_keys=False).rstrip())


COMMANDS = [config_command]
