"""`sleeptrain users ...`: who the agent knows, and deleting a user entirely."""

from __future__ import annotations

import click

from sleeptrain_agent.cli.client import DaemonClient
from sleeptrain_agent.cli.common import App, emit_json, json_option, state_options, table
from sleeptrain_agent.forget import forget_user


@click.group("users")
def users_group() -> None:
    """List users; delete one with everything the agent holds about them."""


@users_group.command("list")
@state_options
@json_option
def users_list(app: App, as_json: bool) -> None:
    """Users with their memory and turn counts, their active adapter, and whether their next sleep is deep.

    Example: sleeptrain users list
    """
    rows = app.store.users()
    if as_json:
        emit_json(rows)
    else:
        table(rows, ["id", "memories", "turns", "adapter", "deep_sleep_due", "created_at"], title="users")


@users_group.command("forget")
@state_options
@click.argument("user")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
def users_forget(app: App, user: str, yes: bool, as_json: bool) -> None:
    """Delete USER entirely: every memory erased (as `memory forget`), then their turns, conversations,
    decisions, sleeps, their whole adapter lineage and the user row; the judge cache is emptied. Other
    users are untouched (their adapters never saw this user's memories). Goes through the running
    daemon when there is one.

    Example: sleeptrain users forget bob --yes
    """
    if not yes:
        click.confirm(f"Delete user {user!r} and everything the agent holds about them?", abort=True)
    client = DaemonClient.of(app)
    if client is not None:
        result = client.post(f"/v1/users/{user}/forget")
    else:
        result = forget_user(app.store, app.state_dir, user)
    if as_json:
        emit_json(result)
        return
    click.echo(f"deleted user {user}: {result['memories']} memories, {result['turns']} turns, "
               f"{result['decisions']} decisions, {result['sleeps_deleted']} sleeps; "
               f"{len(result['adapters_erased'])} adapter(s) deleted")  # fmt: skip


COMMANDS = [users_group]
