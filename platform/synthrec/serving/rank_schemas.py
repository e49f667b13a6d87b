"""Bodies of POST /v1/rank, as they appear in the OpenAPI schema (see serving/rank.py)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from synthrec.serving.schemas import Body, Text

FUNNEL = ("p_click", "p_cart", "p_purchase")  # response fields of label-chain stages


class RankRequest(Body):
    """POST /v1/rank: position-free click, cart and purchase probabilities of candidates."""

    user_id: Text | None = Field(None, description="known user id; unknown ones are cold starts")
    history: list[Text] = Field(
        default_factory=list, description="recent item ids the user interacted with, oldest first"
    )
    query: Text | None = Field(None, max_length=1_000, description="search query text, if any")
    items: list[Text] = Field(
        min_length=1,
        description="candidate item ids (at most the server's limits.max_candidates)",
        examples=[["12", "7"]],
    )


class RankedItem(BaseModel):
    item_id: str
    score: float = Field(description="P(click), without any display-position effect")
    p_click: float
    p_cart: float | None = Field(None, description="P(click and cart); null without that label")
    p_purchase: float | None = Field(
        None, description="P(click and cart and purchase); null without that label"
    )
    cold_item: bool = Field(description="true: the model does not know this item")


class RankResponse(BaseModel):
    items: list[RankedItem] = Field(description="in the order given")
    cold_start: bool
    model_version: str
