"""The sequence generator: a causal transformer over a user's events, and its critic.

One step is one event: (gap, item, fields...). The model reads the previous events (each the
sum of its parts' embeddings plus the user's attribute embeddings and a bucket of the step's
index) and emits the next event part by part, each part conditioned on the parts before it:

    h_t = Transformer(x_<=t)                              # (B, T, C)
    gap    ~ softmax(W_gap h_t)
    field0 ~ ...                     (the "new session" flag, when the log has sessions)
    item   ~ P(cluster | h) P(item | cluster, h)          # two-level catalog head
    fields ~ softmax(W_j (h + e_gap + e_item + e_field<j))

The catalog head never holds a softmax over the catalog per row: items are grouped into K
clusters of at most M items (K * M >= catalog, both ~ sqrt(catalog)), so a step costs O(K + M)
dot products and a row holds K + M logits. Attention is relative (rotary), so a user longer
than the training window is generated with a sliding key/value cache.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

NUM_POSITION_BUCKETS = 16  # log2 buckets of the step index: 0, 1, 2-3, 4-7, ...


@dataclass
class SequenceSpec:
    """What rebuilds the network (stored beside its weights)."""

    num_items: int
    num_clusters: int
    cluster_size: int
    gap_classes: int
    field_classes: list[int]
    user_classes: list[int]
    session_field: int  # index in fields of the "new session" flag (emitted before the item), -1
    # fields constant within a session (a search query, a device): drawn after the flag,
    # before the item, at a session's first event, and copied from the previous event after it
    session_level: list[int] = field(default_factory=list)
    d_model: int = 128
    n_layers: int = 2
    n_heads: int = 4
    window: int = 128
    dropout: float = 0.1

    def to_dict(self) -> dict:
        return asdict(self)


def position_bucket(index: torch.Tensor) -> torch.Tensor:
    """log2 bucket of a step index (0 -> 0, 1 -> 1, 2-3 -> 2, 4-7 -> 3, ...)."""
    return torch.clamp(
        torch.floor(torch.log2(index.float() + 1)).long(), max=NUM_POSITION_BUCKETS - 1
    )


def rotary_angles(pos: torch.Tensor, head_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin (B, 1, T, D/2) of the rotary angles of positions pos (B, T); computed once
    per forward and shared by every layer's queries and keys."""
    d = head_dim // 2
    freq = torch.exp(-math.log(10_000.0) * torch.arange(d, device=pos.device) / d)  # (D/2,)
    angle = pos.float()[:, None, :, None] * freq
    return angle.cos(), angle.sin()


def rotary(x: torch.Tensor, angles: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Rotate pairs of channels of x (B, H, T, D) by the angles of rotary_angles."""
    cos, sin = angles
    d = x.shape[-1] // 2
    x1, x2 = x[..., :d], x[..., d:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class Attention(nn.Module):
    def __init__(self, spec: SequenceSpec):
        super().__init__()
        self.h, self.d = spec.n_heads, spec.d_model // spec.n_heads
        self.qkv = nn.Linear(spec.d_model, 3 * spec.d_model)
        self.out = nn.Linear(spec.d_model, spec.d_model)
        self.dropout = spec.dropout

    def forward(self, x, angles, mask=None, cache=None):
        """x (B, T, C); angles: rotary_angles of the steps; mask (B, 1, T, S) True = attend.
        cache: (k, v, k_pos_valid) ring buffers written in place for sampling (T == 1)."""
        b, t, c = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.h, self.d).permute(2, 0, 3, 1, 4)  # (B, H, T, D)
        q, k = rotary(q, angles), rotary(k, angles)
        if cache is not None:  # one step: plain attention beats the fused kernel at T == 1
            ck, cv, slot = cache["k"], cache["v"], cache["slot"]
            ck[:, :, slot] = k[:, :, 0]
            cv[:, :, slot] = v[:, :, 0]
            att = (q @ ck.transpose(-1, -2)) / math.sqrt(self.d)  # (B, H, 1, W)
            att = att.masked_fill(~mask, float("-inf")).softmax(-1)
            return self.out((att @ cv).transpose(1, 2).reshape(b, t, c))
        drop = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop)
        return self.out(y.transpose(1, 2).reshape(b, t, c))


class Block(nn.Module):
    def __init__(self, spec: SequenceSpec):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(spec.d_model), nn.LayerNorm(spec.d_model)
        self.attn = Attention(spec)
        self.mlp = nn.Sequential(
            nn.Linear(spec.d_model, 4 * spec.d_model),
            nn.GELU(),
            nn.Linear(4 * spec.d_model, spec.d_model),
            nn.Dropout(spec.dropout),
        )

    def forward(self, x, angles, mask=None, cache=None):
        x = x + self.attn(self.ln1(x), angles, mask, cache)
        return x + self.mlp(self.ln2(x))


class StepEmbedding(nn.Module):
    """An event (gap, item, fields) + the user's attributes + the step's index bucket -> (C,)."""

    def __init__(self, spec: SequenceSpec, item_emb: nn.Embedding):
        super().__init__()
        c = spec.d_model
        self.item = item_emb  # shared with the item head (row num_items: "before the first")
        self.gap = nn.Embedding(spec.gap_classes + 1, c)  # last: "before the first event"
        self.fields = nn.ModuleList(nn.Embedding(n + 1, c) for n in spec.field_classes)
        self.users = nn.ModuleList(nn.Embedding(n, c) for n in spec.user_classes)
        self.position = nn.Embedding(NUM_POSITION_BUCKETS, c)

    def user(self, user: torch.Tensor) -> torch.Tensor:
        """(B, A) attribute codes -> (B, C)."""
        out = torch.zeros(user.shape[0], self.position.embedding_dim, device=user.device)
        for j, emb in enumerate(self.users):
            out = out + emb(user[:, j])
        return out

    def forward(self, gap, item, fields, user_vec, index):
        """gap, item (B, T); fields (B, T, F); user_vec (B, C); index (B, T) -> (B, T, C)."""
        x = self.gap(gap) + self.item(item) + self.position(position_bucket(index))
        for j, emb in enumerate(self.fields):
            x = x + emb(fields[..., j])
        return x + user_vec[:, None, :]


class ItemHead(nn.Module):
    """P(item | h) = P(cluster | h) * P(item | cluster, h), items laid out in a (K, M) grid."""

    def __init__(self, spec: SequenceSpec, item_emb: nn.Embedding):
        super().__init__()
        c = spec.d_model
        self.item_emb = item_emb
        self.cluster = nn.Linear(c, spec.num_clusters)
        self.cluster_emb = nn.Embedding(spec.num_clusters, c)
        self.proj = nn.Sequential(nn.Linear(c, c), nn.GELU(), nn.Linear(c, c))
        self.bias = nn.Parameter(torch.zeros(spec.num_items + 1))
        # grid[k, m] = item index or num_items (padding); set from the encoder's clustering
        self.register_buffer("grid", torch.zeros(spec.num_clusters, spec.cluster_size).long())
        self.register_buffer("cluster_of", torch.zeros(spec.num_items).long())
        self.register_buffer("slot_of", torch.zeros(spec.num_items).long())

    def cluster_logits(self, h: torch.Tensor) -> torch.Tensor:
        return self.cluster(h)  # (..., K)

    def member_logits(self, h: torch.Tensor, cluster: torch.Tensor) -> torch.Tensor:
        """h (N, C), cluster (N,) -> (N, M) logits of the cluster's members (padding -inf)."""
        members = self.grid[cluster]  # (N, M)
        z = self.proj(h + self.cluster_emb(cluster))  # (N, C)
        logits = torch.einsum("nc,nmc->nm", z, self.item_emb(members)) + self.bias[members]
        return logits.masked_fill(members == self.item_emb.num_embeddings - 1, float("-inf"))

    def log_prob(self, h: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        """h (N, C), item (N,) -> (N,) log P(item)."""
        k = self.cluster_of[item]
        lp_k = F.log_softmax(self.cluster_logits(h), -1).gather(1, k[:, None])[:, 0]
        lp_m = F.log_softmax(self.member_logits(h, k), -1).gather(1, self.slot_of[item][:, None])
        return lp_k + lp_m[:, 0]


class SequenceModel(nn.Module):
    def __init__(self, spec: SequenceSpec):
        super().__init__()
        self.spec = spec
        c = spec.d_model
        self.item_emb = nn.Embedding(spec.num_items + 1, c)
        self.embed = StepEmbedding(spec, self.item_emb)
        self.blocks = nn.ModuleList(Block(spec) for _ in range(spec.n_layers))
        self.ln = nn.LayerNorm(c)
        self.drop = nn.Dropout(spec.dropout)
        self.gap_head = nn.Linear(c, spec.gap_classes)
        self.gap_in = nn.Embedding(spec.gap_classes, c)  # conditions the parts after the gap
        self.item_head = ItemHead(spec, self.item_emb)
        self.field_in = nn.ModuleList(nn.Embedding(n, c) for n in spec.field_classes)
        self.field_heads = nn.ModuleList(nn.Linear(c, n) for n in spec.field_classes)
        self.apply(_init)

    # -- the trunk ---------------------------------------------------------------------------
    def hidden(self, gap, item, fields, user, index, valid):
        """Inputs (the previous events, shifted) (B, T[, F]); user (B, A); valid (B, T) ->
        hidden states (B, T, C)."""
        x = self.drop(self.embed(gap, item, fields, self.embed.user(user), index))
        t = x.shape[1]
        causal = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
        mask = (causal[None] & valid[:, None, :])[:, None]  # (B, 1, T, T)
        mask = mask | torch.eye(t, dtype=torch.bool, device=x.device)[None, None]
        angles = rotary_angles(index, self.spec.d_model // self.spec.n_heads)
        for block in self.blocks:
            x = block(x, angles, mask)
        return self.ln(x)

    # -- the parts of one step given h ---------------------------------------------------------
    def step_log_prob(self, h, gap, item, fields) -> dict[str, torch.Tensor]:
        """h (N, C); targets gap, item (N,), fields (N, F) -> per-part log-probabilities (N,)."""
        out = {"gap": F.log_softmax(self.gap_head(h), -1).gather(1, gap[:, None])[:, 0]}
        h = h + self.gap_in(gap)
        s = self.spec.session_field
        if s >= 0:
            out[f"field{s}"] = self._field_lp(s, h, fields[:, s])
            h = h + self.field_in[s](fields[:, s])
            starts = fields[:, s] == 1  # only a session's first event draws its session fields
            for j in self.spec.session_level:
                out[f"field{j}"] = self._field_lp(j, h, fields[:, j]) * starts
                h = h + self.field_in[j](fields[:, j])
        out["item"] = self.item_head.log_prob(h, item)
        h = h + self.item_emb(item)
        before = {s, *self.spec.session_level} if s >= 0 else set()
        for j in range(len(self.field_heads)):
            if j in before:
                continue
            out[f"field{j}"] = self._field_lp(j, h, fields[:, j])
            h = h + self.field_in[j](fields[:, j])
        return out

    def _field_lp(self, j, h, target):
        return F.log_softmax(self.field_heads[j](h), -1).gather(1, target[:, None])[:, 0]

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """`log_prob`: training goes through forward, so a DDP wrapper syncs the gradients."""
        return self.log_prob(batch)

    def log_prob(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per-part log-probabilities of each target step (B, T), 0 where not valid."""
        h = self.hidden(
            batch["in_gap"],
            batch["in_item"],
            batch["in_fields"],
            batch["user"],
            batch["index"],
            batch["valid"],
        )
        valid = batch["valid"].reshape(-1)
        flat = h.reshape(-1, h.shape[-1])[valid]
        parts = self.step_log_prob(
            flat,
            batch["gap"].reshape(-1)[valid],
            batch["item"].reshape(-1)[valid],
            batch["fields"].reshape(valid.shape[0], -1)[valid],
        )
        out = {}
        for name, lp in parts.items():
            full = torch.zeros(valid.shape[0], device=h.device)
            full[valid] = lp
            out[name] = full.view_as(batch["valid"].float())
        return out

    # -- sampling, one step with a key/value cache ------------------------------------------------
    def new_cache(self, batch: int, device) -> list[dict]:
        shape = (batch, self.spec.n_heads, self.spec.window, self.spec.d_model // self.spec.n_heads)
        return [
            {"k": torch.zeros(shape, device=device), "v": torch.zeros(shape, device=device)}
            for _ in self.blocks
        ]

    def advance(self, cache, x, index, filled: int) -> torch.Tensor:
        """Feed one step x (B, C) at step index (B,) into the cache; -> h (B, C). `filled` is
        the number of steps fed before this one (the cache holds the last `window`)."""
        w = self.spec.window
        slot = filled % w
        n = min(filled + 1, w)
        mask = torch.zeros(1, 1, 1, w, dtype=torch.bool, device=x.device)
        mask[..., :n] = True
        x = x[:, None, :]
        angles = rotary_angles(index[:, None], self.spec.d_model // self.spec.n_heads)
        for block, c in zip(self.blocks, cache):
            c["slot"] = slot
            x = block(x, angles, mask, c)
        return self.ln(x[:, 0])


class SequenceCritic(nn.Module):
    """Scores a window of events (with the user) as real (high) or generated (low)."""

    def __init__(self, spec: SequenceSpec, d: int = 64):
        super().__init__()
        self.item = nn.Embedding(spec.num_items + 1, d)
        self.gap = nn.Embedding(spec.gap_classes + 1, d)
        self.fields = nn.ModuleList(nn.Embedding(n + 1, d) for n in spec.field_classes)
        self.users = nn.ModuleList(nn.Embedding(n, d) for n in spec.user_classes)
        self.rnn = nn.GRU(d, d, batch_first=True)
        self.out = nn.Sequential(nn.Linear(2 * d, d), nn.GELU(), nn.Linear(d, 1))

    def forward(self, gap, item, fields, user, valid) -> torch.Tensor:
        """Targets (B, T[, F]), user (B, A), valid (B, T) -> (B,) logits."""
        x = self.gap(gap) + self.item(item)
        for j, emb in enumerate(self.fields):
            x = x + emb(fields[..., j])
        u = sum((emb(user[:, j]) for j, emb in enumerate(self.users)), torch.zeros_like(x[:, 0]))
        x = x + u[:, None]
        y, _ = self.rnn(x * valid[..., None])
        lengths = valid.sum(1).clamp(min=1)
        last = y[torch.arange(len(y)), lengths - 1]
        pooled = (y * valid[..., None]).sum(1) / lengths[:, None]
        return self.out(torch.cat([last, pooled], -1))[:, 0]


def _init(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, std=0.02)
