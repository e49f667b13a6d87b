import pytest

from synthrec.config import (
    PIPELINE_RECOMMENDER_BUDGET_S,
    SYNTHETIC_WEIGHT,
    PipelineConfig,
    RecommenderConfig,
    RunSection,
    ScalingSection,
    Section,
    SimulateConfig,
    TrainGanConfig,
    TrainRecommenderConfig,
    load_config,
    validate_config,
)
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
        "allowed here: num_brands, num_categories, num_items, num_queries, num_users, out_uri, rows"
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


def test_config_old_names_still_work_with_a_warning_and_never_together():
    with pytest.warns(FutureWarning) as caught:
        cfg = validate_config(
            TrainGanConfig, {"data": "d.parquet", "out": "m", "checkpoint_every": 3}
        )
    assert (cfg.data_uri, cfg.out_uri, cfg.run.checkpoint_every) == ("d.parquet", "m", 3)
    assert {str(w.message).split("'")[1] for w in caught} == {"data", "out", "checkpoint_every"}
    assert "use 'run.checkpoint_every'" in str(caught[-1].message)
    with pytest.raises(
        ConfigError, match="'out' is the old name of 'out_uri'; give only 'out_uri'"
    ):
        validate_config(TrainGanConfig, {"data_uri": "d", "out": "m", "out_uri": "n"})
    with pytest.warns(FutureWarning, match="'synthetic_weight' is deprecated"):
        pipe = validate_config(PipelineConfig, {"synthetic_weight": 0.7})
    assert pipe.recommender.synthetic_weight == 0.7
    assert pipe.recommender.time_budget_s == PIPELINE_RECOMMENDER_BUDGET_S  # still time-bounded


def test_config_one_run_section_with_the_trainers_defaults():
    gan = TrainGanConfig(data_uri="d", out_uri="m")
    rec = TrainRecommenderConfig(real_uri="r", out_uri="m", run={"keep_checkpoints": 3})
    assert type(gan.run) is RunSection and gan.run.checkpoint_every == 1
    assert rec.run.checkpoint_every == 5 and rec.run.keep_checkpoints == 3
    with pytest.raises(ConfigError, match="key 'run': resume needs run_name"):
        validate_config(
            TrainRecommenderConfig, {"real_uri": "r", "out_uri": "m", "run": {"resume": True}}
        )


def test_config_stop_rule_defaults_are_validated_values():
    assert TrainGanConfig(data_uri="d", out_uri="m").epochs == 30
    assert TrainGanConfig(data_uri="d", out_uri="m", time_budget_min=2).epochs is None
    assert RecommenderConfig().epochs == 200 and RecommenderConfig(time_budget_s=9).epochs is None
    assert RecommenderConfig().model_fields_set >= {"epochs"}  # set through validation
    with pytest.raises(ConfigError, match="key 'epochs'"):
        validate_config(RecommenderConfig, {"epochs": 0})


def test_config_one_synthetic_weight_default():
    assert RecommenderConfig().synthetic_weight == SYNTHETIC_WEIGHT == 0.3
    assert PipelineConfig().recommender.synthetic_weight == SYNTHETIC_WEIGHT
    assert TrainRecommenderConfig(real_uri="r", out_uri="m").model.synthetic_weight == 0.3
    assert "synthetic_weight" not in PipelineConfig.model_fields


def test_config_model_copy_refuses_unknown_fields():
    """pydantic's model_copy sets unknown keys silently: an old field name would be ignored."""
    cfg = SimulateConfig()
    assert cfg.model_copy(update={"out_uri": "x"}).out_uri == "x"
    with pytest.raises(TypeError, match="unknown field"):
        cfg.model_copy(update={"out": "x"})
