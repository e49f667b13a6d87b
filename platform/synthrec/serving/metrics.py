"""Request counts, latency histograms, generated rows, refusals and cold starts as Ray metrics.

Ray exports them in Prometheus format with a `ray_` prefix (`ray_synthrec_requests_total`,
...; see serve/README.md). Outside a Ray worker (plain uvicorn, unit tests) they are no-ops,
so the same routes run anywhere.
"""

from __future__ import annotations

import re
from typing import Any

# Milliseconds: fine below 10 ms (recommendations), coarse up to minutes (large batches).
LATENCY_BOUNDARIES_MS = [
    1,
    2,
    3,
    5,
    8,
    12,
    20,
    35,
    50,
    75,
    100,
    200,
    500,
    1_000,
    2_000,
    5_000,
    10_000,
    60_000,
]

REQUESTS = "synthrec_requests_total"
LATENCY = "synthrec_request_latency_ms"
ROWS = "synthrec_rows_generated_total"
REJECTED = "synthrec_rejected_requests_total"
COLD_STARTS = "synthrec_cold_start_answers_total"


class ServeMetrics:
    """One per replica (or per plain server). Tags: app, endpoint, status / format."""

    def __init__(self, app: str):
        self.app = app
        self._requests: Any = None
        self._latency: Any = None
        self._rows: Any = None
        self._rejected: Any = None
        self._cold: Any = None
        try:
            import ray
            from ray.util import metrics
        except ImportError:  # pragma: no cover - ray is a dependency
            return
        if not ray.is_initialized():
            return
        self._requests = metrics.Counter(
            REQUESTS,
            "HTTP requests answered, by endpoint and status code",
            tag_keys=("app", "endpoint", "status"),
        )
        self._latency = metrics.Histogram(
            LATENCY,
            "Time from request start to response start, ms",
            boundaries=LATENCY_BOUNDARIES_MS,
            tag_keys=("app", "endpoint"),
        )
        self._rows = metrics.Counter(
            ROWS, "Synthetic rows returned by /v1/synthetic", tag_keys=("app", "format")
        )
        self._rejected = metrics.Counter(
            REJECTED,
            "Requests the model refused (422), by the field named: conditions = an unknown "
            "condition value, items = too many candidates, ...",
            tag_keys=("app", "endpoint", "field"),
        )
        self._cold = metrics.Counter(
            COLD_STARTS,
            "Answers for a user the model does not know (the cold-start share is this over "
            "the endpoint's 200s)",
            tag_keys=("app", "endpoint"),
        )

    def request(self, endpoint: str, status: int, latency_ms: float) -> None:
        if self._requests is None:
            return
        self._requests.inc(1, tags={"app": self.app, "endpoint": endpoint, "status": str(status)})
        self._latency.observe(latency_ms, tags={"app": self.app, "endpoint": endpoint})

    def rows(self, count: int, fmt: str) -> None:
        if self._rows is not None and count:
            self._rows.inc(count, tags={"app": self.app, "format": fmt})

    def rejected(self, endpoint: str, field: str | None) -> None:
        if self._rejected is not None:
            # the top-level field only ("conditions", not "conditions.colour"): the keys are
            # the client's, and a tag value per key would grow without bound
            top = re.split(r"[.\[]", field, maxsplit=1)[0] if field else "other"
            tags = {"app": self.app, "endpoint": endpoint, "field": top or "other"}
            self._rejected.inc(1, tags=tags)

    def cold_start(self, endpoint: str) -> None:
        if self._cold is not None:
            self._cold.inc(1, tags={"app": self.app, "endpoint": endpoint})
