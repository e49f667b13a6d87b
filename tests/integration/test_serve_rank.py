"""POST /v1/rank over real HTTP on a real local Ray Serve: answers, their agreement with the
library, bad inputs, and auth on the same route.

One Serve instance for the module on a free loopback port; the model is a tiny F with ranking
heads trained in-process on a simulated search log.
"""

from __future__ import annotations

import numpy as np
import pytest
import requests

from synthrec.local_s3 import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SECRET = "rank-test-key"


@pytest.fixture(scope="module")
def rank_model(tmp_path_factory) -> str:
    from synthrec.config import RecommenderConfig, SimulateConfig
    from synthrec.data.simulator import simulate
    from synthrec.recommender.artifacts import build_recommender, save_recommender
    from synthrec.recommender.ranking import fit_ranking, prepare_ranking

    log = simulate(
        SimulateConfig(
            rows=3000, num_users=100, num_items=300, num_categories=8, num_brands=16, num_queries=40
        )
    )
    cfg = RecommenderConfig(dim=16, max_len=8, epochs=1, ranking_batch_size=256)
    data = prepare_ranking(log, None, cfg)
    fit = fit_ranking(data, cfg)
    out = str(tmp_path_factory.mktemp("rank") / "rec")
    rec = build_recommender(fit.model, data.encoder, cfg, data.known, data.popularity, {})
    save_recommender(rec, out)
    return out


@pytest.fixture(scope="module")
def server(ray_local, rank_model, tmp_path_factory):
    from ray import serve

    from synthrec.config import ServeConfig
    from synthrec.serving.app import ROUTE_PREFIXES, build_apps
    from synthrec.serving.rank_app import RANK_PREFIX, RANKER_APP, build_ranker

    key_file = tmp_path_factory.mktemp("key") / "api-key"
    key_file.write_text(SECRET + "\n")
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    cfg = ServeConfig(
        recommender_uri=rank_model,
        access_log=False,
        api_key_env=None,
        api_key_file=str(key_file),
        limits={"max_candidates": 100, "max_history": 20},
        recommender={"num_cpus": 0.2, "memory_gb": 0.25},
        gateway={"num_cpus": 0.1, "memory_gb": 0.1},
    )
    apps = {**build_apps(cfg), RANKER_APP: build_ranker(cfg)}
    prefixes = {**ROUTE_PREFIXES, RANKER_APP: RANK_PREFIX}
    serve.run_many(
        [serve.RunTarget(app, name=name, route_prefix=prefixes[name]) for name, app in apps.items()]
    )
    yield f"http://127.0.0.1:{port}"
    serve.shutdown()


def post(url: str, path: str, body, key: str | None = SECRET) -> requests.Response:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return requests.post(url + path, json=body, headers=headers, timeout=60)


def test_serve_rank_answers_in_order_like_the_library(server, rank_model):
    from synthrec.recommender.artifacts import load_recommender
    from synthrec.recommender.rerank import BatchRanker

    rec = load_recommender(rank_model)
    user = str(rec.user_ids[0])
    items = [str(i) for i in rec.encoder.item_ids.to_pylist()[:99]] + ["no-such-item"]
    history = items[:2]
    body = {"user_id": user, "history": history, "query": "shoes cheap", "items": items}
    got = post(server, "/v1/rank", body)
    assert got.status_code == 200, got.text
    answer = got.json()
    assert [i["item_id"] for i in answer["items"]] == items  # the order given
    assert answer["items"][-1]["cold_item"] is True and answer["cold_start"] is False
    assert len(answer["model_version"]) == 16
    p = np.array([[i["p_click"], i["p_cart"], i["p_purchase"]] for i in answer["items"]])
    assert (np.diff(p, axis=1) <= 0).all()
    assert [i["score"] for i in answer["items"]] == [i["p_click"] for i in answer["items"]]
    (expected,) = BatchRanker(rec).rank_many([(user, history, "shoes cheap", items)])
    np.testing.assert_allclose(p, expected.probabilities, rtol=1e-5)
    cold = post(server, "/v1/rank", {"items": items[:3]}).json()  # nobody known: still ranked
    assert cold["cold_start"] is True and len(cold["items"]) == 3
    # the next-item route of the same model still answers
    recs = post(server, "/v1/recommendations", {"user_id": user, "k": 5})
    assert recs.status_code == 200 and len(recs.json()["items"]) == 5


@pytest.mark.parametrize(
    "body, status, field",
    [
        ({"user_id": "1", "items": ["x"] * 101}, 422, "items"),  # over limits.max_candidates
        ({"user_id": "1", "items": []}, 422, "items"),
        ({"user_id": "1"}, 422, "items"),
        ({"items": ["x"], "history": ["no-such-item"]}, 422, "history"),
        ({"items": ["x"], "history": ["h"] * 21}, 422, "history"),
        ({"items": ["x"], "position": [1]}, 422, "position"),  # no position at serving
        ({"items": [1, 2]}, 422, "items.0"),
    ],
)
def test_serve_rank_bad_input_names_the_field(server, body, status, field):
    got = post(server, "/v1/rank", body)
    assert got.status_code == status, got.text
    assert got.json()["field"] == field


def test_serve_rank_needs_the_api_key(server):
    got = post(server, "/v1/rank", {"items": ["x"]}, key=None)
    assert got.status_code == 401 and got.json()["field"] == "authorization"
    assert post(server, "/v1/rank", {"items": ["x"]}, key="wrong").status_code == 401
