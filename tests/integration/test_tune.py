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
