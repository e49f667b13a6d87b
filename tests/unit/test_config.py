import pytest

from synthrec.config import ScalingSection, Section, SimulateConfig, load_config, validate_config
from synthrec.errors import ConfigError


class _Job(Section):  # a job config with a nested section, as the Ray jobs have
    name: str = "x"
    scaling: ScalingSection = ScalingSection()


def test_config_yaml_then_flags_override(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("rows: 500\nseed: 3\n")
    cfg = load_config(SimulateConfig, path, {"rows": 700, "seed": None})
    assert (cfg.rows, cfg.seed) == (700, 3)  # None flags keep the YAML value


def test_config_unknown_key_names_it_and_allowed_keys():
    with pytest.raises(ConfigError) as err:
        validate_config(SimulateConfig, {"rows": 10, "colour": "red"})
    assert "unknown key 'colour'" in str(err.value)
    assert (
        "allowed here: num_brands, num_categories, num_items, num_queries, num_users, out, rows"
        in str(err.value)
    )


def test_config_nested_unknown_key_lists_the_sections_keys():
    with pytest.raises(
        ConfigError,
        match=r"unknown key 'scaling\.gpus' \(allowed here: cpus_per_worker, gpus_per_worker",
    ):
        load_config(_Job, None, {"scaling.gpus": 2})


def test_config_wrong_type_names_key_and_value():
    with pytest.raises(ConfigError, match=r"key 'rows': .*integer.*\(got 'many'\)"):
        validate_config(SimulateConfig, {"rows": "many"})
    with pytest.raises(ConfigError, match=r"key 'scaling\.num_workers'"):
        validate_config(_Job, {"scaling": {"num_workers": 0}})


def test_config_seed_must_be_non_negative():
    with pytest.raises(ConfigError, match="key 'seed'"):
        validate_config(SimulateConfig, {"seed": -1})


@pytest.mark.parametrize(
    "text, message",
    [
        ("rows: [unclosed", "not valid YAML"),
        ("- 1\n- 2\n", "top level must be a mapping"),
    ],
)
def test_config_bad_yaml_file(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(SimulateConfig, path)


def test_config_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(SimulateConfig, tmp_path / "none.yaml")


def test_config_json_payload_must_be_a_mapping():
    with pytest.raises(ConfigError, match="expected a mapping"):
        validate_config(SimulateConfig, [1, 2], source="--config")
