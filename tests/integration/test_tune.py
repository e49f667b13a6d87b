"""Ray Tune over F's λ, width and learning rate: a bounded ASHA search on a simulated log,
scored on the real validation split only, its choice published as tuning.json."""

import json

import pytest

from synthrec.config import RecommenderConfig, SimulateConfig

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_tune_bounded_search_picks_from_the_space_and_publishes_it(ray_local, tmp_path):
    from synthrec.data.simulator import simulate
    from synthrec.distributed.tune import TuneSpace, run_tune, save_tuning
    from synthrec.storage import read_files

    log = simulate(
        SimulateConfig(
            rows=3000, num_users=100, num_items=300, num_categories=8, num_brands=16, num_queries=40
        )
    )
    cfg = RecommenderConfig(max_len=8, ranking_batch_size=512, seed=0)
    space = TuneSpace(synthetic_weight=(0.3, 1.0), dim=(8, 16), lr=(1e-3, 1e-2))
    result = run_tune(
        log, log.slice(0, 1000), cfg, space, num_samples=3, max_epochs=2, cpus_per_trial=0.5,
        storage_path=str(tmp_path / "runs"),
    )  # fmt: skip
    best = result["best"]
    assert best["synthetic_weight"] in space.synthetic_weight and best["dim"] in space.dim
    assert 1e-3 <= best["lr"] <= 1e-2
    assert len(result["trials"]) == 3 and all(1 <= t["epochs"] <= 2 for t in result["trials"])
    assert result["best_valid_gauc"] == max(t["valid_gauc"] for t in result["trials"])
    save_tuning(result, str(tmp_path / "tuning"))
    saved = json.loads(read_files(str(tmp_path / "tuning"), ["tuning.json"])["tuning.json"])
    assert saved["best"] == best


def test_tune_cli_searches_publishes_the_chosen_model_and_its_record(ray_local, tmp_path, capsys):
    """`synthrec tune` end to end: 2 trials over λ, synthetic share and width; F trained with
    the chosen values is published at --out-uri (its facts name them), the record beside it."""
    import pyarrow.parquet as pq
    import yaml

    from synthrec.cli import main
    from synthrec.data.simulator import simulate
    from synthrec.recommender.artifacts import has_ranking_heads, load_recommender
    from synthrec.storage import read_files

    log = simulate(
        SimulateConfig(
            rows=2000, num_users=80, num_items=200, num_categories=6, num_brands=12, num_queries=30
        )
    )
    pq.write_table(log, tmp_path / "real.parquet")
    pq.write_table(log.slice(0, 800), tmp_path / "synthetic.parquet")
    config = {
        "model": {"dim": 8, "max_len": 6, "ranking_batch_size": 512, "dropout": 0.0},
        "search": {"synthetic_weight": [0.3, 1.0], "synthetic_share": [0.5, 1.0], "dim": [8, 16],
                   "cpus_per_trial": 0.5},
    }  # fmt: skip
    (tmp_path / "tune.yaml").write_text(yaml.safe_dump(config))
    out = str(tmp_path / "model")
    main(
        ["tune", "--real-uri", str(tmp_path / "real.parquet"),
         "--synthetic-uri", str(tmp_path / "synthetic.parquet"), "--out-uri", out,
         "--config", str(tmp_path / "tune.yaml"), "--num-samples", "2", "--max-epochs", "2"]
    )  # fmt: skip
    record = json.loads(read_files(out + "-tuning", ["tuning.json"])["tuning.json"])
    best = record["best"]
    assert len(record["trials"]) == 2 and record["num_samples"] == 2
    assert best["synthetic_weight"] in (0.3, 1.0) and best["synthetic_share"] in (0.5, 1.0)
    rec = load_recommender(out)
    assert has_ranking_heads(out) and rec.model.spec.dim == best["dim"]
    assert rec.training["tuning"]["best"] == best
    assert rec.training["synthetic_weight"] == best["synthetic_weight"]
    assert "chosen:" in capsys.readouterr().out
