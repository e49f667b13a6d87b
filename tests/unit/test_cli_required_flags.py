"""`--help` marks the flags a command cannot run without: every required key of the
command's config (settable by a flag or by --config), and the required flags of commands that
take no config."""

from __future__ import annotations

import pytest
import typer.main

from synthrec.cli import app
from synthrec.cli.settings import CONFIG_OF_COMMAND

MARKED_WITHOUT_CONFIG = {
    "evaluate": ["--real-uri", "--synthetic-uri"],
    "evaluate-recommender": ["--model-uri", "--real-uri", "--out-dir"],
}


def _helps(command: str) -> dict[str, str]:
    cli = typer.main.get_command(app)
    group, name = (cli, command)
    if command.startswith("data "):
        group, name = cli.commands["data"], command.split()[1]
    params = group.commands[name].params
    return {opt: (p.help or "") for p in params for opt in p.opts}


@pytest.mark.parametrize("command", sorted(CONFIG_OF_COMMAND))
def test_cli_required_config_keys_are_marked_in_help(command):
    cls = CONFIG_OF_COMMAND[command]
    helps = _helps("data simulate" if command == "simulate" else command)
    for key, field in cls.model_fields.items():
        flag = f"--{key.replace('_', '-')}"
        if field.is_required() and flag in helps:
            assert "(required" in helps[flag], (command, flag)


@pytest.mark.parametrize(("command", "flags"), sorted(MARKED_WITHOUT_CONFIG.items()))
def test_cli_required_flags_are_marked_in_help(command, flags):
    helps = _helps(command)
    assert all("(required" in helps[f] for f in flags), {f: helps[f] for f in flags}
    assert "(required" in _helps("data validate")["--data-uri"]


def test_cli_required_mark_shows_in_rendered_help(capsys, monkeypatch):
    """Rendered, not swallowed as rich markup (a "[required]" tag would vanish)."""
    from synthrec.cli import main

    monkeypatch.setenv("COLUMNS", "200")
    assert main(["train-gan", "--help"]) == 0
    assert "(required; or set it in --config)" in capsys.readouterr().out
