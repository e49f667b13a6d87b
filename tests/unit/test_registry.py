"""The model registry on MLflow (SQLite backend): versions, aliases, promotion, rollback, runs."""

import json

import pytest

from synthrec.cli import main
from synthrec.registry import PRODUCTION, Registry, RegistryError


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """A loop root whose registry holds versions 1 and 2 (2 in production, after 1)."""
    path = str(tmp_path_factory.mktemp("loop"))
    with Registry(path) as reg:
        run_id = reg.log_run(
            "f-1", {"model": {"dim": 8}}, [{"epoch": 1, "loss": 0.9}, {"epoch": 2, "loss": 0.5}]
        )
        reg.register(path + "/m1", {"metrics": {"ndcg@10": 0.1}}, run_id=run_id)
        reg.promote(1)
        reg.register(path + "/m2", {"metrics": {"ndcg@10": 0.2}, "parent_version": "1"})
        reg.promote(2)
    return path


def test_registry_versions_aliases_and_lineage(root):
    with Registry(root) as reg:
        versions = reg.versions()
        assert [v.version for v in versions] == [1, 2]
        assert versions[0].model_uri.endswith("/m1") and versions[1].aliases == [
            "candidate",
            PRODUCTION,
        ]
        assert json.loads(versions[1].tags["metrics"]) == {"ndcg@10": 0.2}
        assert reg.resolve("synthrec-recommender@production").version == 2
        assert reg.run_metrics(versions[0].run_id)["loss"] == [0.9, 0.5]


def test_registry_unknown_version_and_alias_are_clear_errors(root):
    with Registry(root) as reg:
        with pytest.raises(RegistryError, match=r"no version 7 \(versions: 1, 2\)"):
            reg.promote(7)
        with pytest.raises(RegistryError, match="no alias 'staging'"):
            reg.resolve("synthrec-recommender@staging")
        with pytest.raises(RegistryError, match="no registered model 'other'"):
            reg.versions("other")


def test_registry_rollback_stops_at_the_first_version(root, capsys):
    assert main(["models", "rollback", "--root-uri", root]) == 0
    with Registry(root) as reg:
        assert reg.alias(PRODUCTION).version == 1
    with pytest.raises(SystemExit) as exit_:
        main(["models", "rollback", "--root-uri", root])
    assert exit_.value.code == 2
    assert "version 1 is the first production version" in capsys.readouterr().err
    assert main(["models", "promote", "2", "--root-uri", root]) == 0
    assert main(["models", "list", "--root-uri", root]) == 0
    assert "production history: 1 -> 2" in capsys.readouterr().out


def test_registry_show_prints_lineage_and_training_run(root, capsys):
    assert main(["models", "show", "1", "--root-uri", root]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["version"] == 1 and shown["model_uri"].endswith("/m1")
    assert shown["tags"]["metrics"] == {"ndcg@10": 0.1}
    assert shown["training_run"]["loss"] == [0.9, 0.5]
