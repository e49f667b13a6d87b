"""POST /v1/rank through the plain in-process API (the same routes and model code as Serve)."""

import pytest
from fastapi.testclient import TestClient

from synthrec.config import RecommenderConfig, ServeConfig, SimulateConfig


@pytest.fixture(scope="module")
def rank_model(tmp_path_factory) -> str:
    from synthrec.data.simulator import simulate
    from synthrec.recommender.artifacts import build_recommender, save_recommender
    from synthrec.recommender.ranking import build_ranking_model, prepare_ranking

    log = simulate(
        SimulateConfig(
            rows=2000, num_users=80, num_items=200, num_categories=6, num_brands=12, num_queries=30
        )
    )
    cfg = RecommenderConfig(dim=8, max_len=6)
    data = prepare_ranking(log, None, cfg)
    model = build_ranking_model(data, cfg).eval()  # untrained: the route, not the quality
    out = str(tmp_path_factory.mktemp("rank") / "rec")
    save_recommender(
        build_recommender(model, data.encoder, cfg, data.known, data.popularity, {}), out
    )
    return out


def _client(uri: str) -> TestClient:
    from synthrec.serving.backends import build_local_api

    cfg = ServeConfig(
        recommender_uri=uri, api_key_env=None, api_key_required=False,
        limits={"max_candidates": 3},
    )  # fmt: skip
    return TestClient(build_local_api(cfg))


def test_serving_rank_route_answers_and_bounds_candidates(rank_model):
    client = _client(rank_model)
    got = client.post("/v1/rank", json={"query": "shoes", "items": ["i0002", "nope", "i0001"]})
    assert got.status_code == 200, got.text
    items = got.json()["items"]
    assert [i["item_id"] for i in items] == ["i0002", "nope", "i0001"]
    assert [i["cold_item"] for i in items] == [False, True, False]
    assert all(i["p_click"] >= i["p_cart"] >= i["p_purchase"] > 0 for i in items)
    over = client.post("/v1/rank", json={"items": ["a", "b", "c", "d"]})
    assert over.status_code == 422 and over.json()["field"] == "items"
    assert "limit is 3" in over.json()["detail"]
    assert "/v1/rank" in client.get("/openapi.json").json()["paths"]


def test_serving_rank_route_is_503_without_ranking_heads(tmp_path, rank_model):
    from synthrec.recommender.artifacts import load_recommender, save_recommender
    from synthrec.recommender.model import RecommenderModel

    rec = load_recommender(rank_model)
    spec = rec.model.spec
    spec.num_labels, spec.num_positions = 0, 0
    plain = RecommenderModel(spec)
    plain.load_state_dict(rec.model.state_dict(), strict=False)
    rec.model = plain
    save_recommender(rec, str(tmp_path / "plain"))
    got = _client(str(tmp_path / "plain")).post("/v1/rank", json={"items": ["i0001"]})
    assert got.status_code == 503 and "label columns" in got.json()["detail"]
