"""Model F: a two-tower retrieval model. Pure nn.Module; knows nothing of files, Ray or HTTP.

- Item tower: id embedding + attribute embeddings (categories, standardized numerics with a
  null flag), so an item with few interactions still gets a vector from its attributes.
- User/context tower: a causal transformer (SASRec-style) over [USER, item_1, ..., item_t];
  the USER token carries the user's features; a hashed-token query, when the model has one,
  is added to each slot's output as request context.
- Score of item i at slot t: <u_t, v_i>. Item vectors double as input embeddings.
- Ranking heads (when the log has labels): an MLP over [u, v, u·v] of the user state before
  a request (plus its query) and a candidate item gives one logit per funnel stage,
  P(click), P(cart | click), P(purchase | cart). A display-position bias is added to the click
  logit while training only, so the served scores are position-free (position debiasing).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class ModelSpec:
    """Everything needed to rebuild the network (goes to config.json beside the weights)."""

    num_items: int
    item_cat_sizes: list[int] = field(default_factory=list)
    item_num_dim: int = 0
    user_cat_sizes: list[int] = field(default_factory=list)
    user_num_dim: int = 0
    query_buckets: int = 0  # 0: no query input
    dim: int = 64
    num_layers: int = 2
    num_heads: int = 1
    max_len: int = 50
    dropout: float = 0.2
    num_labels: int = 0  # ranking heads, one per funnel stage; 0: next-item only
    num_positions: int = 0  # display positions with a training-time bias; 0: none

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSpec:
        return cls(**data)


class FeatureEmbedding(nn.Module):
    """Sum of one embedding per categorical column plus a linear map of the numerics."""

    def __init__(self, cat_sizes: list[int], num_dim: int, dim: int):
        super().__init__()
        self.cats = nn.ModuleList(nn.Embedding(size, dim, padding_idx=0) for size in cat_sizes)
        self.num = nn.Linear(num_dim, dim, bias=False) if num_dim else None

    def forward(self, cat: torch.Tensor, num: torch.Tensor) -> torch.Tensor:
        # cat (N, C) int64, num (N, M) float -> (N, dim)
        out = (
            self.num(num)
            if self.num is not None
            else cat.new_zeros(cat.shape[0], 1, dtype=torch.float)
        )
        for j, emb in enumerate(self.cats):
            out = out + emb(cat[:, j])
        return out


class ItemTower(nn.Module):
    """Vectors of all items at once: (I+1, dim), row 0 (padding) is zero."""

    def __init__(self, spec: ModelSpec):
        super().__init__()
        self.ids = nn.Embedding(spec.num_items + 1, spec.dim, padding_idx=0)
        self.attributes = FeatureEmbedding(spec.item_cat_sizes, spec.item_num_dim, spec.dim)
        # Attribute tables are buffers: saved with the weights, so the model is self-contained.
        self.register_buffer(
            "item_cat", torch.zeros(spec.num_items + 1, len(spec.item_cat_sizes), dtype=torch.long)
        )
        self.register_buffer("item_num", torch.zeros(spec.num_items + 1, spec.item_num_dim))

    def forward(self) -> torch.Tensor:
        vectors = self.ids.weight + self.attributes(self.item_cat, self.item_num)
        return vectors * (torch.arange(len(vectors), device=vectors.device) > 0)[:, None]


class Block(nn.Module):
    """Pre-norm transformer block with causal self-attention."""

    def __init__(self, dim: int, num_heads: int, dropout: float):
        super().__init__()
        self.num_heads, self.dropout = num_heads, dropout
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim), nn.Dropout(dropout)
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = (
            self.qkv(self.norm1(x))
            .view(B, T, 3, self.num_heads, C // self.num_heads)
            .permute(2, 0, 3, 1, 4)
        )
        att = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0
        )
        x = x + F.dropout(
            self.proj(att.transpose(1, 2).reshape(B, T, C)), self.dropout, self.training
        )
        return x + self.mlp(self.norm2(x))


class RankingHeads(nn.Module):
    """Logits of the label chain for (user state, candidate item) pairs; the position bias
    shifts stage 0 (click) only and only when positions are given (training)."""

    def __init__(self, spec: ModelSpec):
        super().__init__()
        d, self.num_labels = spec.dim, spec.num_labels
        self.mlp = nn.Sequential(
            nn.Linear(3 * d, 2 * d), nn.GELU(), nn.Linear(2 * d, spec.num_labels)
        )
        self.position = (
            nn.Embedding(spec.num_positions + 1, 1, padding_idx=0) if spec.num_positions else None
        )

    def forward(
        self, user: torch.Tensor, item: torch.Tensor, position: torch.Tensor | None = None
    ) -> torch.Tensor:
        # user, item (N, d); position (N,) int64 1..P, 0 = unknown -> logits (N, K)
        logits = self.mlp(torch.cat([user, item, user * item], dim=-1))
        if position is not None and self.position is not None:
            logits = logits + F.pad(self.position(position), (0, self.num_labels - 1))
        return logits


class RecommenderModel(nn.Module):
    def __init__(self, spec: ModelSpec):
        super().__init__()
        self.spec = spec
        d = spec.dim
        self.items = ItemTower(spec)
        self.user = FeatureEmbedding(spec.user_cat_sizes, spec.user_num_dim, d)
        self.user_token = nn.Parameter(torch.zeros(d))
        self.position = nn.Embedding(spec.max_len, d)
        self.query = (
            nn.EmbeddingBag(spec.query_buckets + 1, d, mode="sum", padding_idx=0)
            if spec.query_buckets
            else None
        )
        self.blocks = nn.ModuleList(
            Block(d, spec.num_heads, spec.dropout) for _ in range(spec.num_layers)
        )
        self.norm = nn.LayerNorm(d)
        self.ranker = RankingHeads(spec) if spec.num_labels else None
        self.apply(_init)

    def set_item_features(self, cat: torch.Tensor, num: torch.Tensor) -> None:
        self.items.item_cat.copy_(cat)
        self.items.item_num.copy_(num)

    def item_vectors(self) -> torch.Tensor:
        return self.items()  # (I+1, d)

    def encode(
        self,
        tokens: torch.Tensor,
        user_cat: torch.Tensor,
        user_num: torch.Tensor,
        query: torch.Tensor | None = None,
        item_vectors: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """tokens (B, T): 0 pad, 1..I items, I+1 user token -> user vectors per slot (B, T, d)."""
        B, T = tokens.shape
        vectors = self.item_vectors() if item_vectors is None else item_vectors
        is_user = tokens == self.spec.num_items + 1
        user = self.user(user_cat, user_num) + self.user_token  # (B, d)
        x = vectors[tokens.clamp(max=self.spec.num_items)]
        x = torch.where(is_user[..., None], user[:, None, :], x)
        x = F.dropout(x + self.position.weight[-T:], self.spec.dropout, self.training)
        valid = tokens != 0
        # causal, and padded keys are hidden; a padded query slot sees itself so no row is empty
        eye = torch.eye(T, dtype=torch.bool, device=tokens.device)
        mask = (
            torch.ones(T, T, dtype=torch.bool, device=tokens.device).tril() & valid[:, None, :]
        ) | eye
        for block in self.blocks:
            x = block(x, mask[:, None])
        out = self.norm(x)
        if self.query is not None and query is not None:
            Q = query.shape[-1]
            out = out + self.query(query.reshape(-1, Q)).view(B, T, -1)
        return out

    def user_state(
        self,
        tokens: torch.Tensor,
        user_cat: torch.Tensor,
        user_num: torch.Tensor,
        query: torch.Tensor | None = None,
        item_vectors: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(B, d) state after each window's last slot, plus its request's query (B, Q)."""
        state = self.encode(tokens, user_cat, user_num, None, item_vectors)[:, -1]
        if self.query is not None and query is not None:
            state = state + self.query(query)
        return state

    def rank_logits(
        self,
        state: torch.Tensor,
        items: torch.Tensor,
        position: torch.Tensor | None = None,
        item_vectors: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(N, K) label-chain logits of candidate `items` (N,) for user states (N, d); pass
        `position` only in training."""
        if self.ranker is None:
            raise RuntimeError("this model has no ranking heads (trained without labels)")
        vectors = self.item_vectors() if item_vectors is None else item_vectors
        return self.ranker(state, vectors[items], position)

    def forward(self, tokens, user_cat, user_num, query=None) -> tuple[torch.Tensor, torch.Tensor]:
        """(user vectors (B, T, d), item vectors (I+1, d))."""
        vectors = self.item_vectors()
        return self.encode(tokens, user_cat, user_num, query, vectors), vectors


def _init(module: nn.Module) -> None:
    if isinstance(module, (nn.Linear, nn.Embedding, nn.EmbeddingBag)):
        nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        if isinstance(module, (nn.Embedding, nn.EmbeddingBag)) and module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()
