"""Generated references (docs/cli.md, docs/schema.md) match the code."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_generated_docs_are_current():
    result = subprocess.run([sys.executable, "scripts/gen_docs.py", "--check"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_readme_documents_every_config_key():
    from sleeptrain_agent.config import Settings

    readme = (ROOT / "README.md").read_text()
    for section, model in Settings.model_fields.items():
        for key in model.annotation.model_fields:
            assert f"`{section}.{key}`" in readme, f"README does not document {section}.{key}"


def _walk(group, prefix=()):
    import click

    for name, command in sorted(group.commands.items()):
        yield (*prefix, name), command
        if isinstance(command, click.Group):
            yield from _walk(command, (*prefix, name))


def test_every_command_and_option_has_help():
    """Like sqlite-utils' test_commands_have_help: a command without a summary, or an option or a
    flag without help text, fails here."""
    import click

    from sleeptrain_agent.cli import cli

    missing = []
    for path, command in _walk(cli):
        name = " ".join(path)
        if not (command.help or "").strip():
            missing.append(f"command {name}")
        elif not isinstance(command, click.Group) and "Example:" not in command.help:
            missing.append(f"command {name}: no example in its docstring")
        for param in command.params:
            if isinstance(param, click.Option) and not (param.help or "").strip():
                missing.append(f"{name} {param.opts[0]}")
    assert not missing, "no help text: " + ", ".join(missing)
