"""`synthrec evaluate-recommender` end to end on a toy model; train-recommender flag checks."""

import json

import pyarrow.parquet as pq
import pytest
import torch
from test_recommender_data import toy_table

from synthrec.cli import main
from synthrec.config import RecommenderConfig
from synthrec.recommender.artifacts import build_recommender, save_recommender
from synthrec.recommender.train import fit, prepare_training


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def test_cli_evaluate_writes_json_and_table(tmp_path, capsys):
    table = toy_table(num_users=30)
    cfg = RecommenderConfig(dim=16, num_layers=1, max_len=6, epochs=3, batch_size=16)
    data = prepare_training(table, None, cfg)
    model = fit(data.encoder, cfg, data.train, valid=data.valid).model
    save_recommender(
        build_recommender(
            model, data.encoder, cfg, data.known, data.popularity, {"holdout": cfg.holdout}
        ),
        str(tmp_path / "model"),
    )
    pq.write_table(table, tmp_path / "real.parquet")
    main(
        [
            "evaluate-recommender",
            "--model-uri",
            str(tmp_path / "model"),
            "--real-uri",
            str(tmp_path / "real.parquet"),
            "--out-dir",
            str(tmp_path / "eval"),
        ]
    )
    report = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert set(report["ranking"]) == {"F", "popularity", "ease"}
    assert {"overall", "short_history", "rare_category"} <= set(report["ranking"]["F"])
    # next-item ranking is judged on positives: one test row per user with a click
    clicked = {u for u, c in zip(table["user_id"].to_pylist(), table["click"].to_pylist()) if c}
    assert 0.0 <= report["click_auc"]["F"] <= 1.0 and report["num_test_users"] == len(clicked)
    assert "| F |" in (tmp_path / "eval" / "metrics.md").read_text()
    assert "NDCG@10" in capsys.readouterr().out


def test_cli_evaluate_rejects_a_table_with_unknown_items(tmp_path, capsys):
    table = toy_table(num_users=10)
    cfg = RecommenderConfig(dim=16, num_layers=1, max_len=6, epochs=1, batch_size=16)
    data = prepare_training(table, None, cfg)
    model = fit(data.encoder, cfg, data.train).model
    save_recommender(
        build_recommender(model, data.encoder, cfg, data.known, data.popularity, {}),
        str(tmp_path / "m"),
    )
    other = toy_table(num_users=10, num_items=25, seed=3)  # items i10..i24 are new to the model
    pq.write_table(other, tmp_path / "other.parquet")
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "evaluate-recommender",
                "--model-uri",
                str(tmp_path / "m"),
                "--real-uri",
                str(tmp_path / "other.parquet"),
                "--out-dir",
                str(tmp_path / "eval"),
            ]
        )
    assert exit_info.value.code == 2
    assert "item id(s) the model does not know" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv,message",
    [
        (
            ["--real-uri", "r.parquet", "--out-uri", "m", "--synthetic-weight", "0.5"],
            "needs --synthetic-uri",
        ),
        (
            ["--real-uri", "r.parquet", "--out-uri", "m", "--epochs", "3", "--time-budget", "1"],
            "not both",
        ),
        (["--real-uri", "r.parquet", "--out-uri", "m", "--holdout", "sometimes"], "holdout"),
    ],
)
def test_cli_train_rejects_bad_flags_before_starting_ray(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train-recommender", *argv])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
