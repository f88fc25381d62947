"""What every command shares: the `--state-dir`/`--config` options, the lazily
opened store, `--json` output and rich tables."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from memory.store import Store
from sleeptrain_agent.config import Settings, config_path, load_settings
from sleeptrain_agent.config import state_dir as state_dir_of


def console() -> Console:
    """A console on the current stdout (tests swap it); wide when not a terminal."""
    import sys

    return Console(highlight=False, width=None if sys.stdout.isatty() else 200)


@dataclass
class App:
    """The resolved settings and state directory of one command invocation."""

    state_dir: Path
    settings: Settings
    config_file: Path | None = None
    _store: Store | None = field(default=None, repr=False)

    @property
    def store(self) -> Store:
        if self._store is None:
            cfg = self.settings.store
            self._store = Store(
                self.state_dir / cfg.filename, busy_timeout_ms=cfg.busy_timeout_ms, max_text_bytes=cfg.max_text_bytes
            )
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()


def state_options(fn):
    """Add `--state-dir` and `--config`; pass the command an `App` as its first argument."""

    @click.option(
        "--state-dir",
        type=click.Path(file_okay=False, path_type=Path),
        help="State directory (database, adapters, logs). Env: SLEEPTRAIN_HOME. Default: ./state",
    )
    @click.option(
        "--config",
        "config_file",
        type=click.Path(dir_okay=False, path_type=Path),
        help="YAML config file. Env: SLEEPTRAIN_CONFIG. Default: configs/agent.yaml",
    )
    @functools.wraps(fn)
    def wrapper(*args, state_dir: Path | None, config_file: Path | None, **kwargs):
        app = App(
            state_dir=state_dir_of(state_dir), settings=load_settings(config_file), config_file=config_path(config_file)
        )
        try:
            return fn(app, *args, **kwargs)
        finally:
            app.close()

    return wrapper


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def table(rows: list[dict], columns: list[str], title: str | None = None, max_width: int = 60) -> None:
    """Print rows as a rich table with the given columns (long cells are shortened)."""
    if not rows:
        console().print(f"[dim]no {title or 'rows'}[/dim]")
        return
    t = Table(title=title, title_justify="left")
    for col in columns:
        t.add_column(col, overflow="fold", max_width=max_width)
    for row in rows:
        t.add_row(*(escape(_cell(row.get(col), max_width)) for col in columns))
    console().print(t)


def _cell(value: Any, max_width: int) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, str) and len(value) == 32 and value[10:11] == "T" and value.endswith("+00:00"):
        return value[:19].replace("T", " ")  # timestamps: to the second, UTC
    if not isinstance(value, str):
        value = json.dumps(value, ensure_ascii=False)
    value = value.replace("\x00", "\\0").replace("\n", " ")
    return value if len(value) <= max_width * 3 else value[: max_width * 3 - 1] + "…"
