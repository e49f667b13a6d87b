"""The HTTP layer without Ray: validation, limits, auth, errors and encodings.

The ports here are test doubles of the model side (the routes only delegate); real models
are served in tests/integration/test_serve.py.
"""

from __future__ import annotations

import io
import json

import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from fastapi.testclient import TestClient

from synthrec.config import ServeConfig
from synthrec.errors import ConfigError
from synthrec.serving.api import RequestRejected, build_api
from synthrec.serving.auth import ApiKey, load_api_key
from synthrec.serving.encode import encode_table
from synthrec.serving.schemas import OutputFormat, RecommendationRequest, SyntheticRequest

TABLE = pa.table(
    {"genre": ["Drama", "Comedy"], "rating": [4, 2], "when": pa.array([1, 2], pa.timestamp("s"))}
)


class Gen:
    async def generate(self, request: SyntheticRequest):
        if request.conditions.get("genre") == "Nope":
            raise RequestRejected(
                "condition genre='Nope': value never seen in training", "conditions"
            )
        return encode_table(TABLE, request.format, "g1"), TABLE.num_rows, "g1"

    async def model_info(self):
        return {"loaded": True, "version": "g1"}


class Rec:
    async def recommend(self, request: RecommendationRequest):
        return json.dumps(
            {
                "items": [{"item_id": "7", "score": 0.5}],
                "cold_start": request.user_id is None,
                "model_version": "r1",
            }
        ).encode()

    async def model_info(self):
        return {"loaded": True, "version": "r1"}


def client(key: str | None = None, **cfg) -> TestClient:
    config = ServeConfig(**cfg)
    return TestClient(build_api(config, ApiKey(key), generator=Gen(), recommender=Rec()))


@pytest.mark.parametrize(
    "body, status, field",
    [
        (b'{"rows": 3,', 400, "body"),  # malformed JSON
        (b"[1, 2]", 422, "body"),  # not an object
        (b'{"rows": "many"}', 422, "rows"),  # wrong type
        (b'{"rows": 0}', 422, "rows"),  # below 1
        (b'{"rows": 101}', 422, "rows"),  # over the configured limit
        (b'{"rows": 3, "colour": "red"}', 422, "colour"),  # unknown key
        (b'{"rows": 3, "format": "xml"}', 422, "format"),
        (b'{"rows": 3, "conditions": {"genre": ["a"]}}', 422, "conditions.genre"),
        (
            b'{"rows": 3, "conditions": {"genre": "Nope"}}',
            422,
            "conditions",
        ),  # the model refuses it
        (b'{"rows": 3, "conditions": {"rating": NaN}}', 422, "conditions.rating"),
        (b'{"rows": 3, "conditions": {"rating": -Infinity}}', 422, "conditions.rating"),
        (b'{"rows": 3, "rebalance": {"genre": {"Drama": Infinity}}}', 422, "rebalance.genre"),
        (b'{"rows": 3, "conditions": {"\\ud800": 1}}', 422, "conditions"),  # lone surrogate
        (b'{"rows": 3, "conditions": {"genre": "\\udc00x"}}', 422, "conditions.genre"),
    ],
)
def test_serving_api_synthetic_rejects_bad_input(body, status, field):
    res = client(limits={"max_rows": 100}).post(
        "/v1/synthetic", content=body, headers={"content-type": "application/json"}
    )
    assert res.status_code == status, res.text
    assert res.json()["field"] == field
    assert field.split(".")[0].rstrip("s") in res.json()["detail"]


@pytest.mark.parametrize(
    "body, field",
    [
        ({"user_id": 42}, "user_id"),
        ({"user_id": "1", "k": 11}, "k"),
        ({"user_id": "1", "k": 0}, "k"),
        ({"history": ["1", "2", "3", "4"]}, "history"),
        ({"history": "12"}, "history"),
        ({}, "body"),  # nobody to recommend for
        ({"user_id": "1", "exclude_seen": "perhaps"}, "exclude_seen"),
        ({"user_id": "\ud800"}, "user_id"),  # lone surrogate: not UTF-8
        ({"history": ["1", "\udfff"]}, "history.1"),
    ],
)
def test_serving_api_recommendations_reject_bad_input(body, field):
    res = client(limits={"max_k": 10, "max_history": 3}).post(
        "/v1/recommendations",
        content=json.dumps(body).encode(),  # ASCII escapes: a lone surrogate survives the trip
        headers={"content-type": "application/json"},
    )
    assert res.status_code == 422, res.text
    assert res.json()["field"] == field


def test_serving_api_answers_in_each_format():
    c = client()
    body = c.post("/v1/synthetic", json={"rows": 2, "seed": 1}).json()
    assert body["model_version"] == "g1" and body["rows"][0]["genre"] == "Drama"
    arrow = c.post("/v1/synthetic", json={"rows": 2, "format": "arrow"})
    assert arrow.headers["content-type"] == "application/vnd.apache.arrow.stream"
    table = pa.ipc.open_stream(arrow.content).read_all()
    assert (
        table.column("rating").to_pylist() == [4, 2]
        and table.schema.metadata[b"model_version"] == b"g1"
    )
    csv = c.post("/v1/synthetic", json={"rows": 2, "format": "csv"})
    assert csv.headers["x-model-version"] == "g1"
    assert pacsv.read_csv(io.BytesIO(csv.content)).column("genre").to_pylist() == [
        "Drama",
        "Comedy",
    ]
    rec = c.post("/v1/recommendations", json={"history": ["1"], "k": 1}).json()
    assert rec == {
        "items": [{"item_id": "7", "score": 0.5}],
        "cold_start": True,
        "model_version": "r1",
    }


def test_serving_api_refuses_large_and_non_json_bodies():
    c = client(limits={"max_body_bytes": 1024})
    big = c.post(
        "/v1/synthetic",
        content=b'{"rows": 1, "seed": 1' + b" " * 2000 + b"}",
        headers={"content-type": "application/json"},
    )
    assert big.status_code == 413 and big.json()["field"] == "body"
    form = c.post("/v1/synthetic", content=b'{"rows": 1}', headers={"content-type": "text/plain"})
    assert form.status_code == 422 and "Content-Type: application/json" in form.json()["detail"]


def test_serving_api_chunked_body_over_the_limit_is_413():
    """No Content-Length to check up front: the body is counted as it arrives."""
    c = client(limits={"max_body_bytes": 1024})

    def chunks(size: int):
        yield b'{"rows": 1, "seed": 1'
        yield b" " * size
        yield b"}"

    headers = {"content-type": "application/json"}
    big = c.post("/v1/synthetic", content=chunks(4000), headers=headers)
    assert big.status_code == 413, big.text
    assert big.json()["field"] == "body" and "1024" in big.json()["detail"]
    small = c.post("/v1/synthetic", content=chunks(100), headers=headers)
    assert small.status_code == 200, small.text


def test_serving_api_response_over_the_limit_is_413_naming_rows():
    class Wide(Gen):
        async def generate(self, request):
            return b"x" * (request.rows * 1000), request.rows, "g1"

    config = ServeConfig(limits={"max_response_bytes": 1 << 16})
    c = TestClient(build_api(config, ApiKey(None), generator=Wide()))
    assert c.post("/v1/synthetic", json={"rows": 60}).status_code == 200
    res = c.post("/v1/synthetic", json={"rows": 70})
    assert res.status_code == 413 and res.json()["field"] == "rows"
    assert "fewer rows" in res.json()["detail"]


def test_serving_limits_cap_rows_per_request():
    from synthrec.config import ServeLimits

    with pytest.raises(ValueError, match="max_rows"):
        ServeLimits(max_rows=10_000_000)  # ~8 GB of JSON in one answer


def test_serving_api_unencodable_error_text_is_4xx_not_500():
    """A model error that repeats a lone surrogate still gives JSON (escaped), not a 500."""

    class Echo(Gen):
        async def generate(self, request):
            raise RequestRejected("condition column '\ud800x': never seen", "conditions")

    c = TestClient(
        build_api(ServeConfig(), ApiKey(None), generator=Echo()), raise_server_exceptions=False
    )
    res = c.post("/v1/synthetic", json={"rows": 1})
    assert res.status_code == 422 and "\\ud800x" in res.json()["detail"]


def test_serving_api_unexpected_errors_are_generic_with_a_reference(caplog):
    class Broken(Gen):
        async def generate(self, request):
            raise RuntimeError("cannot open /srv/private/bucket-layout/model.bin")

    c = TestClient(
        build_api(ServeConfig(), ApiKey(None), generator=Broken()), raise_server_exceptions=False
    )
    with caplog.at_level("ERROR", logger="ray.serve"):
        res = c.post("/v1/synthetic", json={"rows": 1})
    assert res.status_code == 500 and res.headers["content-type"] == "application/json"
    assert "private" not in res.text and "RuntimeError" not in res.text
    ref = res.json()["detail"].split("ref ")[1].split(")")[0]
    assert any(ref in r.getMessage() for r in caplog.records)  # the detail is in the log
    assert "bucket-layout" in caplog.text


def test_serving_api_missing_model_is_503_naming_the_flag():
    c = TestClient(build_api(ServeConfig(), ApiKey(None)))
    res = c.post("/v1/recommendations", json={"user_id": "1"})
    assert res.status_code == 503 and "--recommender" in res.json()["detail"]
    assert c.get("/v1/models").json() == {
        "generator": {"loaded": False},
        "recommender": {"loaded": False},
    }


def test_serving_api_key_guards_v1_routes_only():
    c = client(key="s3cret")
    assert c.post("/v1/recommendations", json={"user_id": "1"}).status_code == 401
    wrong = c.get("/v1/models", headers={"authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
    assert "nope" not in wrong.text and "s3cret" not in wrong.text
    ok = c.get("/v1/models", headers={"authorization": "Bearer s3cret"})
    assert ok.status_code == 200 and ok.json()["recommender"]["version"] == "r1"
    assert c.get("/healthz").status_code == 200
    assert client().get("/v1/models").status_code == 200  # no key configured: open


def test_serving_auth_reads_file_before_env(tmp_path, monkeypatch):
    monkeypatch.setenv("SYNTHREC_TEST_KEY", "from-env")
    assert load_api_key(ServeConfig(api_key_env="SYNTHREC_TEST_KEY")).check(b"Bearer from-env")
    secret = tmp_path / "key"
    secret.write_text("from-file\n")
    key = load_api_key(ServeConfig(api_key_env="SYNTHREC_TEST_KEY", api_key_file=str(secret)))
    assert key.check(b"Bearer from-file") and not key.check(b"Bearer from-env")
    assert "from-file" not in repr(key) and str(secret) in key.source
    monkeypatch.delenv("SYNTHREC_TEST_KEY")
    open_cfg = ServeConfig(api_key_env="SYNTHREC_TEST_KEY", api_key_required=False)
    assert not load_api_key(open_cfg).enabled
    secret.write_text("")
    with pytest.raises(ConfigError, match="empty"):
        load_api_key(ServeConfig(api_key_file=str(secret)))
    with pytest.raises(ConfigError, match="cannot be read"):
        load_api_key(ServeConfig(api_key_file=str(tmp_path / "missing")))


def test_serving_auth_fails_closed_on_a_replica_without_the_key(monkeypatch):
    """The default requires a key: a replica whose node lacks the variable refuses to start."""
    monkeypatch.delenv("SYNTHREC_TEST_KEY", raising=False)
    with pytest.raises(ConfigError, match="env SYNTHREC_TEST_KEY is unset") as err:
        load_api_key(ServeConfig(api_key_env="SYNTHREC_TEST_KEY"))
    assert "api_key_required" in str(err.value)


@pytest.mark.parametrize(
    "host, loopback",
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.5", False),
        ("serve.internal", False),
    ],
)
def test_serving_auth_knows_loopback(host, loopback):
    from synthrec.serving.auth import is_loopback

    assert is_loopback(host) is loopback


def test_serving_resolve_auth_refuses_an_open_non_loopback_host(monkeypatch):
    from synthrec.serving.auth import resolve_auth

    monkeypatch.delenv("SYNTHREC_TEST_KEY", raising=False)
    base = {"api_key_env": "SYNTHREC_TEST_KEY"}
    with pytest.raises(ConfigError, match="host 0.0.0.0: refusing .* --insecure"):
        resolve_auth(ServeConfig(host="0.0.0.0", **base))
    cfg, key = resolve_auth(ServeConfig(host="0.0.0.0", insecure=True, **base))
    assert not key.enabled and cfg.api_key_required is False  # explicit opt-out
    cfg, _ = resolve_auth(ServeConfig(**base))  # loopback development: open
    assert cfg.api_key_required is False
    sent = ServeConfig.model_validate_json(ServeConfig(**base).model_dump_json())
    assert resolve_auth(sent)[0].api_key_required is False  # a config sent as JSON: the same
    with pytest.raises(ConfigError, match="api_key_required is true but no API key"):
        resolve_auth(ServeConfig(api_key_required=True, **base))
    monkeypatch.setenv("SYNTHREC_TEST_KEY", "k")
    cfg, key = resolve_auth(ServeConfig(host="0.0.0.0", **base))
    assert key.enabled and cfg.api_key_required is True  # replicas must find it too


def test_serving_openapi_documents_every_endpoint():
    schema = client().get("/openapi.json").json()
    assert {"/v1/synthetic", "/v1/recommendations", "/v1/models", "/healthz"} <= set(
        schema["paths"]
    )
    synthetic = schema["paths"]["/v1/synthetic"]["post"]
    assert synthetic["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "SyntheticRequest"
    )
    assert "application/vnd.apache.arrow.stream" in synthetic["responses"]["200"]["content"]
    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert {
        "SyntheticRequest",
        "RecommendationRequest",
        "RecommendationResponse",
        "ErrorResponse",
    } <= set(schema["components"]["schemas"])


def test_serving_schemas_forbid_unknown_keys():
    with pytest.raises(ValueError):
        SyntheticRequest.model_validate({"rows": 1, "row": 2})
    assert SyntheticRequest.model_validate({"rows": 1}).format is OutputFormat.json


def test_serving_in_process_batches_concurrent_recommendations():
    """The plain-uvicorn twin of @serve.batch: queued requests form one batch, answers in order."""
    import asyncio

    from synthrec.serving.backends import _InProcess

    class Backend:
        sizes: list[int] = []

        def recommend_many(self, requests):
            self.sizes.append(len(requests))
            return [
                RequestRejected("history: unknown", "history")
                if r.user_id == "bad"
                else r.user_id.encode()
                for r in requests
            ]

    port = _InProcess(Backend(), batch=True, max_batch_size=4)

    async def main():
        users = ["a", "b", "bad", "c", "d", "e"]
        return await asyncio.gather(
            *[port.recommend(RecommendationRequest(user_id=u)) for u in users],
            return_exceptions=True,
        )

    out = asyncio.run(main())
    assert (
        out[:2] == [b"a", b"b"]
        and isinstance(out[2], RequestRejected)
        and out[3:] == [b"c", b"d", b"e"]
    )
    assert Backend.sizes == [4, 2]


@pytest.mark.parametrize(
    "body, field",
    [
        ({}, "rows"),  # no count
        ({"unit": "users"}, "rows"),  # still no count
        ({"rows": 3, "users": 3}, "users"),  # two counts
        ({"rows": 3, "unit": "users"}, "unit"),  # users are counted in users
        ({"users": 0}, "users"),
        ({"users": 11}, "users"),  # over the configured limit
        ({"users": 3, "unit": "events"}, "unit"),
    ],
)
def test_serving_api_synthetic_counts_rows_or_users(body, field):
    res = client(limits={"max_users": 10}).post("/v1/synthetic", json=body)
    assert res.status_code == 422 and res.json()["field"] == field, res.text


@pytest.mark.parametrize("cold", [True, False])
def test_serving_cold_start_is_read_from_the_encoded_answer(cold):
    """The cold-start metric reads the flag from the body the backend encoded, so the pattern
    must match to_json's output and never an item id that spells it."""
    from synthrec.serving.encode import encode_recommendations, is_cold_start

    tricky = '"cold_start":true'
    body = encode_recommendations([tricky, "7"], [0.5, 0.25], cold, "v1")
    assert json.loads(body)["items"][0]["item_id"] == tricky
    assert is_cold_start(body) is cold
