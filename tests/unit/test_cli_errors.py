"""Config errors in the words of the command line: the flags a user types, not config keys."""

import pytest

from synthrec.cli import main
from synthrec.config import TrainGanConfig, load_config
from synthrec.errors import ConfigError


def _error(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in lines[0], lines
    return lines[0]


def test_cli_errors_missing_values_name_the_required_flags(capsys):
    assert _error(["train-gan"], capsys) == "error: --data-uri is required; --out-uri is required"


def test_cli_errors_bad_flag_values_name_the_flag_and_value(capsys):
    line = _error(["generate", "--model-uri", "m", "--out-uri", "o", "--rows", "0"], capsys)
    assert line == "error: --rows: Input should be greater than or equal to 1 (got 0)"
    line = _error(["train-gan", "--data-uri", "d", "--out-uri", "o", "--time-budget", "-1"], capsys)
    assert line.startswith("error: --time-budget: Input should be greater than 0")  # not the key


def test_cli_errors_yaml_values_keep_their_key_and_file(tmp_path, capsys):
    config = tmp_path / "gan.yaml"
    config.write_text("epochs: 0\n")
    line = _error(["train-gan", "--config", str(config), "--data-uri", "d"], capsys)
    assert line == (
        f"error: --out-uri is required (or 'out_uri' in {config}); "
        f"{config}: key 'epochs': Input should be greater than or equal to 1 (got 0)"
    )


def test_cli_errors_library_callers_get_config_keys():
    with pytest.raises(ConfigError, match=r"^flags: key 'data_uri' is required; key 'out_uri'"):
        load_config(TrainGanConfig, None, {"epochs": 3})
