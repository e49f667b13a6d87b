"""Training and sampling steps of the sequence generator (no I/O, no Ray).

- `item_grid`: the catalog laid out in K clusters of at most M items for the two-level item
  head; items that share users sit together (a k-d split of a truncated SVD of the item x user
  matrix), so the cluster step carries taste and the member step the item.
- `make_windows`: users cut into windows of `window` target events; the input of each target
  is the event before it (a "before the first" token for a user's first event), so a window
  that starts inside a long user still sees its previous event.
- `mle_step` / `evaluate_nll`: maximum likelihood; `adversarial_step`: the critic learns real
  from generated windows and the generator follows the critic's score by policy gradient
  (REINFORCE with a batch-mean baseline), keeping a maximum-likelihood term.
- `sample_sequences`: all users of a block generated step by step with a key/value cache;
  users are sorted longest first so the active batch shrinks as users end.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from synthrec.sequences.encoding import Sequences
from synthrec.sequences.model import SequenceCritic, SequenceModel, SequenceSpec

# ---------------------------------------------------------------------------- catalog grid


def item_grid(
    seqs: Sequences,
    num_items: int,
    seed: int,
    rank: int = 16,
    attribute: np.ndarray | None = None,
    usage: bool = True,
) -> np.ndarray:
    """(K, M) item indices (num_items = padding), K a power of two near sqrt(num_items).
    With `attribute` (a code per item, e.g. its category), items are ordered by it first and
    cut into K runs, so a cluster is (part of) one category and the cluster step learns
    P(category | history, query). `usage=False` (a DP fit): nothing read from the events,
    items in catalog order (within their attribute)."""
    levels = max(0, int(np.ceil(np.log2(max(1.0, np.sqrt(num_items))))))
    k = 2**levels
    emb = _item_embedding(seqs, num_items, seed, rank) if usage else np.zeros((num_items, 1))
    group = np.zeros(num_items, np.int64)
    if attribute is not None:
        order = np.lexsort((np.arange(num_items), emb[:, 0], attribute))
        group[order] = np.arange(num_items) * k // max(num_items, 1)
        levels = 0
    for level in range(levels):  # k-d split: median of one SVD component per level
        value = emb[:, level % emb.shape[1]]
        order = np.lexsort((np.arange(num_items), value, group))
        g = group[order]
        first = np.r_[0, np.flatnonzero(np.diff(g)) + 1]
        size = np.diff(np.r_[first, num_items])
        rank_in = np.arange(num_items) - np.repeat(first, size)
        upper = rank_in >= np.repeat((size + 1) // 2, size)
        group[order] = g * 2 + upper
    m = int(np.bincount(group, minlength=k).max())
    grid = np.full((k, m), num_items, np.int64)
    order = np.lexsort((np.arange(num_items), group))
    g = group[order]
    first = np.r_[0, np.flatnonzero(np.diff(g)) + 1]
    size = np.diff(np.r_[first, num_items])
    slot = np.arange(num_items) - np.repeat(first, size)
    grid[g, slot] = order
    return grid


def _item_embedding(seqs: Sequences, num_items: int, seed: int, rank: int) -> np.ndarray:
    user = np.repeat(np.arange(seqs.num_users), np.diff(seqs.offsets))
    pairs = np.unique(seqs.item * seqs.num_users + user)
    if num_items < 4 or len(pairs) == 0:
        return np.zeros((num_items, 1))
    idx = torch.from_numpy(np.stack([pairs // seqs.num_users, pairs % seqs.num_users]))
    deg = np.bincount(pairs // seqs.num_users, minlength=num_items).astype(np.float32)
    val = torch.from_numpy(1.0 / np.sqrt(np.maximum(deg[pairs // seqs.num_users], 1.0)))
    mat = torch.sparse_coo_tensor(
        idx, val.float(), (num_items, seqs.num_users), check_invariants=False
    ).coalesce()
    q = min(rank, num_items - 1, seqs.num_users - 1)
    if q < 1:
        return np.zeros((num_items, 1))
    torch.manual_seed(seed)
    u, s, _ = torch.svd_lowrank(mat, q=q, niter=3)
    return (u * s).numpy()


# ---------------------------------------------------------------------------- windows


@dataclass
class Windows:
    """(N, W) targets and inputs of training windows; user row per window."""

    gap: np.ndarray
    item: np.ndarray
    fields: np.ndarray  # (N, W, F)
    in_gap: np.ndarray
    in_item: np.ndarray
    in_fields: np.ndarray
    index: np.ndarray  # step index within the user
    valid: np.ndarray
    user: np.ndarray  # (N,) row of Sequences.user
    first: np.ndarray  # (N,) the window starts at the user's first event

    def __len__(self) -> int:
        return len(self.user)


def make_windows(seqs: Sequences, spec: SequenceSpec, users: np.ndarray) -> Windows:
    """Windows of the given users (indices into seqs)."""
    w = spec.window
    lengths = np.diff(seqs.offsets)[users]
    per_user = np.maximum(1, -(-lengths // w))
    win_user = np.repeat(users, per_user)
    win_start = np.arange(per_user.sum()) - np.repeat(np.cumsum(per_user) - per_user, per_user)
    win_start = win_start * w  # (N,) first target's step index
    step = win_start[:, None] + np.arange(w)[None, :]  # (N, W)
    valid = step < np.diff(seqs.offsets)[win_user][:, None]
    pos = seqs.offsets[win_user][:, None] + np.minimum(
        step, np.diff(seqs.offsets)[win_user, None] - 1
    )
    prev = pos - 1
    bos = step == 0
    nf = seqs.fields.shape[1]
    bos_fields = np.asarray(spec.field_classes, np.int64)
    fields_in = np.where(bos[..., None], bos_fields, seqs.fields[np.maximum(prev, 0)])
    return Windows(
        gap=np.where(valid, seqs.gap[pos], 0),
        item=np.where(valid, seqs.item[pos], 0),
        fields=np.where(valid[..., None], seqs.fields[pos], 0).reshape(len(win_user), w, nf),
        in_gap=np.where(bos, spec.gap_classes, seqs.gap[np.maximum(prev, 0)]),
        in_item=np.where(bos, spec.num_items, seqs.item[np.maximum(prev, 0)]),
        in_fields=fields_in.reshape(len(win_user), w, nf),
        index=step,
        valid=valid,
        user=win_user,
        first=win_start == 0,
    )


def batch_of(win: Windows, rows: np.ndarray, user_codes: np.ndarray, device) -> dict:
    def t(x):
        return torch.from_numpy(np.ascontiguousarray(x)).to(device)

    return {
        "gap": t(win.gap[rows]),
        "item": t(win.item[rows]),
        "fields": t(win.fields[rows]),
        "in_gap": t(win.in_gap[rows]),
        "in_item": t(win.in_item[rows]),
        "in_fields": t(win.in_fields[rows]),
        "index": t(win.index[rows]),
        "valid": t(win.valid[rows]),
        "user": t(user_codes[win.user[rows]]),
    }


# ---------------------------------------------------------------------------- steps


def nll(model, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
    """Mean negative log-likelihood per event (all parts) and per part. `model` may be a DDP
    wrapper: its forward is `SequenceModel.log_prob`."""
    parts = model(batch)
    n = batch["valid"].sum().clamp(min=1)
    per_part = {k: -(v.sum() / n) for k, v in parts.items()}
    return sum(per_part.values()), {k: float(v.detach()) for k, v in per_part.items()}


def mle_step(model, opt, batch) -> dict[str, float]:
    model.train()
    loss, parts = nll(model, batch)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    return {"nll": float(loss.detach()), **parts}


@torch.no_grad()
def nll_sums(
    model, win: Windows, rows: np.ndarray, user_codes, batch_size: int, device
) -> tuple[float, float]:
    """(summed NLL, number of events) of the windows `rows`: ranks add theirs up."""
    model.eval()
    total, count = 0.0, 0.0
    for lo in range(0, len(rows), batch_size):
        b = batch_of(win, rows[lo : lo + batch_size], user_codes, device)
        loss, _ = nll(model, b)
        n = float(b["valid"].sum())
        total, count = total + float(loss) * n, count + n
    return total, count


def evaluate_nll(model, win: Windows, user_codes, batch_size: int, device) -> float:
    total, count = nll_sums(model, win, np.arange(len(win)), user_codes, batch_size, device)
    return total / max(count, 1.0)


def adversarial_step(
    model: SequenceModel,
    critic: SequenceCritic,
    opt_g,
    opt_c,
    real: dict,
    mle_weight: float,
    gen: torch.Generator,
    net=None,
    critic_net=None,
) -> dict[str, float]:
    """One critic update and one generator update on windows that start at the users' first
    event (`real`): generated windows get the same users and lengths. `net` / `critic_net` are
    the modules to train through (DDP wrappers; default the modules themselves): each runs
    one forward per backward, on real and generated windows stacked, as DDP requires."""
    net, critic_net = net or model, critic_net or critic
    n = real["user"].shape[0]
    lengths = real["valid"].sum(1)
    fake = generate_windows(model, real["user"], lengths, gen)
    both = {k: torch.cat([fake[k], real[k]]) for k in real}  # (2B, W...): fake first
    critic.train()
    c = critic_net(both["gap"], both["item"], both["fields"], both["user"], both["valid"])
    c_fake, c_real = c[:n], c[n:]
    c_loss = F.softplus(-c_real).mean() + F.softplus(c_fake).mean()
    opt_c.zero_grad(set_to_none=True)
    c_loss.backward()
    opt_c.step()
    with torch.no_grad():
        critic.eval()
        reward = critic(fake["gap"], fake["item"], fake["fields"], fake["user"], fake["valid"])
        adv = (reward - reward.mean()) / (reward.std() + 1e-6)
    model.train()
    lp = sum(net(both).values())  # (2B, W) log-probabilities per event
    pg = -(adv * lp[:n].sum(1) / lengths.clamp(min=1)).mean()
    mle = -lp[n:].sum() / real["valid"].sum().clamp(min=1)
    loss = pg + mle_weight * mle
    opt_g.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt_g.step()
    return {
        "critic_loss": float(c_loss.detach()),
        "critic_real": float(c_real.detach().mean()),
        "critic_fake": float(c_fake.detach().mean()),
        "mle": float(mle.detach()),
    }


@torch.no_grad()
def generate_windows(model: SequenceModel, user, lengths, gen) -> dict:
    """Sample windows from scratch (training form: targets and shifted inputs)."""
    spec, dev = model.spec, user.device
    n, w, nf = user.shape[0], spec.window, len(spec.field_classes)
    lengths = lengths.clamp(max=w)
    out = sample_sequences(model, user, lengths, gen, Sampling())
    valid = torch.arange(w, device=dev)[None] < lengths[:, None]
    rows, cols = torch.nonzero(valid, as_tuple=True)  # row-major: the flat outputs' order
    gap = torch.zeros(n, w, dtype=torch.long, device=dev)
    item = torch.zeros_like(gap)
    fields = torch.zeros(n, w, nf, dtype=torch.long, device=dev)
    gap[rows, cols], item[rows, cols], fields[rows, cols] = out["gap"], out["item"], out["fields"]
    bos_fields = torch.tensor(spec.field_classes, dtype=torch.long, device=dev).expand(n, 1, nf)
    return {
        "gap": gap,
        "item": item,
        "fields": fields,
        "in_gap": torch.cat([torch.full((n, 1), spec.gap_classes, device=dev), gap[:, :-1]], 1),
        "in_item": torch.cat([torch.full((n, 1), spec.num_items, device=dev), item[:, :-1]], 1),
        "in_fields": torch.cat([bos_fields, fields[:, :-1]], 1),
        "index": torch.arange(w, device=dev).expand(n, w),
        "valid": valid,
        "user": user,
    }


# ---------------------------------------------------------------------------- sampling


@dataclass
class Sampling:
    """Knobs and exact conditions of one sampling call."""

    temperature: float = 1.0
    top_p: float = 1.0
    item_allowed: torch.Tensor | None = None  # (num_items,) bool: items that may be drawn
    item_log_weight: torch.Tensor | None = None  # (num_items,) added to item log-probs
    fixed_fields: dict[int, int] | None = None  # field index -> code
    field_mask: dict[int, torch.Tensor] | None = None  # field index -> (classes,) 0 or -inf
    no_repeat: bool = False  # never draw an item the user already has (logs without repeats)


def _draw(logits: torch.Tensor, gen, temperature: float, top_p: float = 1.0) -> torch.Tensor:
    """(N, V) logits -> (N,) draws with temperature and nucleus (top-p) truncation."""
    probs = torch.softmax(logits / temperature, -1)
    if top_p < 1.0:
        sorted_p, order = probs.sort(-1, descending=True)
        cut = sorted_p.cumsum(-1) - sorted_p > top_p  # keep the smallest set reaching top_p
        sorted_p = sorted_p.masked_fill(cut, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
    cdf = probs.cumsum(-1)  # inverse-CDF draw: one uniform per row
    u = torch.rand(probs.shape[0], 1, generator=gen, device=probs.device) * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True)[:, 0].clamp(max=probs.shape[-1] - 1)


@torch.no_grad()
def sample_sequences(
    model: SequenceModel, user: torch.Tensor, lengths: torch.Tensor, gen, s: Sampling
) -> dict[str, torch.Tensor]:
    """Users (B, A) codes and their lengths (B,) -> flat steps in user order:
    gap (E,), item (E,), fields (E, F)."""
    model.eval()
    spec, dev = model.spec, user.device
    b = user.shape[0]
    order = torch.argsort(lengths, descending=True, stable=True)
    lengths_sorted = lengths[order]
    offsets = torch.cumsum(lengths, 0) - lengths  # flat start of each user (user order)
    start_sorted = offsets[order]
    total = int(lengths.sum())
    nf = len(spec.field_classes)
    out_gap = torch.zeros(total, dtype=torch.long, device=dev)
    out_item = torch.zeros(total, dtype=torch.long, device=dev)
    out_fields = torch.zeros(total, nf, dtype=torch.long, device=dev)
    user_vec = model.embed.user(user[order])
    cache = model.new_cache(b, dev)
    prev_gap = torch.full((b,), spec.gap_classes, device=dev)
    prev_item = torch.full((b,), spec.num_items, device=dev)
    prev_fields = torch.tensor(spec.field_classes, device=dev).long().expand(b, nf).clone()
    cluster_mask, member_mask, item_bias = _item_constraints(model, s)
    head = model.item_head
    max_len = int(lengths_sorted[0]) if b else 0
    # (B, num_items + 1) items each user already has; only when the log never repeats
    seen = torch.zeros(b, spec.num_items + 1, dtype=torch.bool, device=dev) if s.no_repeat else None
    if seen is not None:
        seen[:, spec.num_items] = True  # padding slots count as taken
    for t in range(max_len):
        n = int((lengths_sorted > t).sum())
        cache = [{"k": c["k"][:n], "v": c["v"][:n]} for c in cache]
        index = torch.full((n,), t, device=dev)
        x = model.embed(
            prev_gap[:n, None],
            prev_item[:n, None],
            prev_fields[:n, None],
            user_vec[:n],
            index[:, None],
        )[:, 0]
        h = model.advance(cache, x, index, t)
        gap = _draw(model.gap_head(h), gen, s.temperature)
        h = h + model.gap_in(gap)
        fields = torch.zeros(n, nf, dtype=torch.long, device=dev)
        sf = spec.session_field
        before = {sf, *spec.session_level} if sf >= 0 else set()
        if sf >= 0:
            fields[:, sf] = 1 if t == 0 else _field(model, sf, h, gen, s)  # a user starts one
            h = h + model.field_in[sf](fields[:, sf])
            new = fields[:, sf] == 1
            for j in spec.session_level:
                fields[:, j] = torch.where(new, _field(model, j, h, gen, s), prev_fields[:n, j])
                h = h + model.field_in[j](fields[:, j])
        logits_k = head.cluster_logits(h) + cluster_mask
        cluster = _draw(logits_k, gen, s.temperature, s.top_p)
        logits_m = head.member_logits(h, cluster) + member_mask[cluster] + item_bias[cluster]
        if seen is not None:
            taken = seen[:n].gather(1, head.grid[cluster])
            # a cluster whose drawable members (allowed by the conditions) the user has all
            # had: allow repeats rather than leave nothing to draw
            full = (taken | logits_m.isneginf()).all(1, keepdim=True)
            logits_m = logits_m.masked_fill(taken & ~full, float("-inf"))
        item = head.grid[cluster, _draw(logits_m, gen, s.temperature, s.top_p)]
        if seen is not None:
            seen[torch.arange(n, device=dev), item] = True
        h = h + model.item_emb(item)
        for j in range(nf):
            if j in before:
                continue
            fields[:, j] = _field(model, j, h, gen, s)
            h = h + model.field_in[j](fields[:, j])
        at = start_sorted[:n] + t
        out_gap[at], out_item[at], out_fields[at] = gap, item, fields
        prev_gap, prev_item, prev_fields = gap, item, fields
    return {"gap": out_gap, "item": out_item, "fields": out_fields}


def _field(model, j, h, gen, s: Sampling) -> torch.Tensor:
    if s.fixed_fields and j in s.fixed_fields:
        return torch.full((h.shape[0],), s.fixed_fields[j], dtype=torch.long, device=h.device)
    logits = model.field_heads[j](h)
    if s.field_mask and j in s.field_mask:
        logits = logits + s.field_mask[j].to(h.device)
    return _draw(logits, gen, s.temperature)


def _item_constraints(model: SequenceModel, s: Sampling):
    """Additive masks/biases on the cluster (K,) and member (K, M) logits."""
    head = model.item_head
    grid = head.grid
    pad = grid == model.spec.num_items
    dev = grid.device
    member = torch.zeros(grid.shape, device=dev)
    bias = torch.zeros(grid.shape, device=dev)
    if s.item_log_weight is not None:
        w = torch.cat([s.item_log_weight.to(dev), torch.zeros(1, device=dev)])
        bias = w[grid].masked_fill(pad, 0.0)
    if s.item_allowed is not None:
        allowed = torch.cat([s.item_allowed.to(dev), torch.zeros(1, dtype=torch.bool, device=dev)])
        member = member.masked_fill(~allowed[grid], float("-inf"))
    # the cluster draw must see the members' weights and masks: log mean of exp(bias) over
    # the allowed members, weighted by each member's unconditional share (the item bias)
    shift = torch.logsumexp(member + bias + head.bias[grid].masked_fill(pad, -1e9), -1)
    base = torch.logsumexp(head.bias[grid].masked_fill(pad, -1e9), -1)
    cluster = shift - base  # (K,) -inf for clusters without an allowed item
    return cluster, member, bias
