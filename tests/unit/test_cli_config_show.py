"""`synthrec config show COMMAND` prints every key the command's --config reads, with the
defaults the command uses: the printed YAML, required keys filled, loads back as the default
config."""

from __future__ import annotations

import pytest
import yaml

from synthrec.cli import main
from synthrec.cli.settings import CONFIG_OF_COMMAND
from synthrec.config import load_config


@pytest.mark.parametrize("command", sorted(CONFIG_OF_COMMAND))
def test_cli_config_show_prints_the_defaults_the_command_uses(command, tmp_path, capsys):
    assert main(["config", "show", command]) == 0
    text = capsys.readouterr().out
    values = yaml.safe_load(text)
    cls = CONFIG_OF_COMMAND[command]
    required = {k: f"{k}-value" for k, f in cls.model_fields.items() if f.is_required()}
    chosen = {"rows": 10} if command == "generate" else {}  # one of rows / users, no default
    assert set(values) == set(cls.model_fields)
    assert all(values[k] is None for k in required) and all(k in text for k in required)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({**values, **required, **chosen}))
    loaded = load_config(cls, path, {})
    expected = load_config(cls, None, {**required, **chosen})
    assert loaded.model_dump() == expected.model_dump()


def test_cli_config_show_refuses_an_unknown_command(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["config", "show", "train"])
    assert exited.value.code == 2 and "train-gan" in capsys.readouterr().err
