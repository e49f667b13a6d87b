"""Request and response bodies of the HTTP API, as they appear in the OpenAPI schema.

Requests forbid unknown keys, so a typo (`"row": 10`) is a 422 naming the field instead of a
silently ignored option. NaN and Infinity (which Python's JSON parser accepts) are 422s, and
so is text that cannot be encoded as UTF-8 (a lone surrogate such as "\\ud800"), which could
not be echoed back in an error. Per-server limits (rows, k, history) are checked in the
routes, because they come from the deployment's config rather than from the schema.
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator


def _utf8(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text must be valid UTF-8 (it holds a lone surrogate)") from None
    return text


Text = Annotated[str, AfterValidator(_utf8)]
ConditionValue = Text | int | float | bool


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class OutputFormat(str, Enum):
    """How /v1/synthetic returns rows."""

    json = "json"  # {"rows": [{...}], "model_version": "..."}
    arrow = "arrow"  # Arrow IPC stream (application/vnd.apache.arrow.stream)
    csv = "csv"  # text/csv with a header row


class Unit(str, Enum):
    """What /v1/synthetic returns."""

    rows = "rows"  # a flat table; for a sequence model one row per event, with the user id
    users = "users"  # a sequence model's users, each with its attributes and an `events` list


class SyntheticRequest(Body):
    """POST /v1/synthetic: a batch of synthetic data from the loaded generator.

    Give the count as `rows` or `users` (one of them):
    - `rows`: exactly that many rows; from a sequence model, that many events, user after
      user (the last user's events are cut at the count);
    - `users` (sequence models): exactly that many whole users with all their events.

    `unit` is the shape of the answer; by default `users` when `users` is given, else `rows`:
    - `rows`: a flat table (JSON `{"rows": [...]}`, Arrow or CSV); a sequence model's rows are
      its events, each with its user's id and attributes;
    - `users` (sequence models; JSON or Arrow): one entry per user, its id and attributes and
      `events`, the user's events in time order (JSON `{"users": [{"user_id": .., "events":
      [{..}, ..]}]}`; Arrow: a list-of-struct column `events`). CSV cannot nest: use `rows`.
    """

    rows: int | None = Field(
        None,
        ge=1,
        description="exact number of rows (events, for a sequence model) to return; at most "
        "the server's limits.max_rows",
        examples=[1000],
    )
    users: int | None = Field(
        None,
        ge=1,
        description="exact number of whole users with their events (sequence models); at most "
        "the server's limits.max_users",
    )
    unit: Unit | None = Field(
        None, description="rows | users: the answer's shape (default: users when `users` is given)"
    )
    conditions: dict[Text, ConditionValue] = Field(
        default_factory=dict,
        description="column -> value every returned row must have (exact)",
        examples=[{"genre": "Documentary"}],
    )
    rebalance: dict[Text, Literal["uniform"] | dict[Text, float]] = Field(
        default_factory=dict,
        description="column -> 'uniform' or {value: probability} for the returned mix",
    )
    seed: int = Field(0, ge=0, le=2**63 - 1, description="same seed, same request -> same rows")
    format: OutputFormat = Field(OutputFormat.json, description="json | arrow (IPC stream) | csv")


class SyntheticUser(BaseModel):
    """One user of a `unit: users` answer: the users table's columns (the user id first), then
    the user's events, each with the event and item columns (not repeating the user's)."""

    model_config = ConfigDict(extra="allow")
    events: list[dict[str, Any]]


class SyntheticResponse(BaseModel):
    """JSON answer of /v1/synthetic (format=json): `rows` for unit rows, `users` for unit
    users (the other key is absent). Arrow and CSV carry X-Model-Version."""

    rows: list[dict[str, Any]] | None = None
    users: list[SyntheticUser] | None = None
    model_version: str


class RecommendationRequest(Body):
    """POST /v1/recommendations: top-k items for a user, a history of recent items, or both."""

    user_id: Text | None = Field(
        None, description="known user id; an unknown one gets a cold-start answer", examples=["42"]
    )
    history: list[Text] = Field(
        default_factory=list, description="recent item ids, oldest first", examples=[["12", "7"]]
    )
    query: Text | None = Field(None, max_length=1_000, description="optional search query text")
    k: int = Field(10, ge=1, description="number of items (at most the server's limits.max_k)")
    exclude_seen: bool = Field(
        True, description="leave out items in the user's known history and in `history`"
    )

    @model_validator(mode="after")
    def _someone_to_recommend_for(self) -> RecommendationRequest:
        if self.user_id is None and not self.history and not self.query:
            raise ValueError("give user_id, history or query (none was given)")
        return self


class ScoredItem(BaseModel):
    item_id: str
    score: float


class RecommendationResponse(BaseModel):
    items: list[ScoredItem] = Field(description="best first")
    cold_start: bool = Field(
        description="true: the user was unknown; the answer came from history or popularity"
    )
    model_version: str


class ModelInfo(BaseModel):
    loaded: bool
    uri: str | None = None
    version: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class ModelsResponse(BaseModel):
    generator: ModelInfo
    recommender: ModelInfo


class HealthResponse(BaseModel):
    status: Literal["ok"] = "ok"


class ErrorResponse(BaseModel):
    """Every 4xx/5xx body: what is wrong and, where it applies, which request field."""

    detail: str
    field: str | None = None
