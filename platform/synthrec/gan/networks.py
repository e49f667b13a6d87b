"""Networks and output heads: residual generator, PacGAN critic, span-wise activations.

`GanLayout` turns the encoder's spans into index tensors once, so every activation, loss and
decode below is a handful of whole-batch tensor ops, never a Python loop over spans or rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from synthrec.encoding import Encoder

INFERENCE_ROWS = 256  # rows per matmul when sampling (eval mode): activations stay in L2 cache


@dataclass
class GanLayout:
    """Index tensors describing the encoded matrix (D columns) and the conditional vector."""

    data_dim: int
    seg: torch.Tensor  # (D,) segment of each column; every scalar column is its own segment
    num_segments: int
    is_scalar: torch.Tensor  # (D,) bool
    onehot_cols: torch.Tensor  # (Do,) columns of one-hot spans
    onehot_seg: torch.Tensor  # (Do,) one-hot span number 0..S-1 of each such column
    onehot_pos: torch.Tensor  # (Do,) position inside its span
    onehot_spans: list[int]  # encoder span index of each one-hot span
    cond_src: torch.Tensor  # (Dc,) data column of each conditional-vector entry
    cond_seg: torch.Tensor  # (Dc,) conditional span number 0..J-1 of each entry
    cond_spans: list[int]  # encoder span index of each conditional span

    @property
    def cond_dim(self) -> int:
        return len(self.cond_src)

    @classmethod
    def from_encoder(cls, encoder: Encoder, device: torch.device | str = "cpu") -> GanLayout:
        is_scalar, oh_cols, oh_seg, oh_pos, oh_spans, c_src, c_seg = [], [], [], [], [], [], []
        seg_ids, next_seg, next_cond = [], 0, 0
        for i, span in enumerate(encoder.spans):
            cols = list(range(span.start, span.stop))
            is_scalar += [span.kind == "scalar"] * span.size
            if span.kind == "scalar":  # every scalar column is its own (size-1) segment
                seg_ids += list(range(next_seg, next_seg + span.size))
                next_seg += span.size
            else:
                seg_ids += [next_seg] * span.size
                next_seg += 1
                oh_cols += cols
                oh_seg += [len(oh_spans)] * span.size
                oh_pos += list(range(span.size))
                oh_spans.append(i)
            if span.cond:
                c_src += cols
                c_seg += [next_cond] * span.size
                next_cond += 1
        t = lambda x, dt=torch.long: torch.tensor(x, dtype=dt, device=device)  # noqa: E731
        return cls(
            encoder.output_dim,
            t(seg_ids),
            next_seg,
            t(is_scalar, torch.bool),
            t(oh_cols),
            t(oh_seg),
            t(oh_pos),
            oh_spans,
            t(c_src),
            t(c_seg),
            encoder.cond_spans,
        )

    def to(self, device: torch.device | str) -> GanLayout:
        fields = {
            k: (v.to(device) if isinstance(v, torch.Tensor) else v)
            for k, v in self.__dict__.items()
        }
        return GanLayout(**fields)


def _segment_max(x: torch.Tensor, seg: torch.Tensor, num: int) -> torch.Tensor:
    """(B, num) per-segment max of x (B, D); no gradient (used as a softmax shift)."""
    idx = seg.expand(x.shape[0], -1)
    return torch.full(
        (x.shape[0], num), float("-inf"), device=x.device, dtype=x.dtype
    ).scatter_reduce(1, idx, x.detach(), "amax", include_self=True)


def segment_log_softmax(x: torch.Tensor, seg: torch.Tensor, num: int) -> torch.Tensor:
    """log-softmax of x (B, D) inside each segment, same shape."""
    idx = seg.expand(x.shape[0], -1)
    shifted = x - _segment_max(x, seg, num).gather(1, idx)
    sums = torch.zeros(x.shape[0], num, device=x.device, dtype=x.dtype).scatter_add(
        1, idx, shifted.exp()
    )
    return shifted - sums.log().gather(1, idx)


def activate(
    raw: torch.Tensor, layout: GanLayout, tau: float, rng: torch.Generator | None
) -> torch.Tensor:
    """Generator logits (B, D) -> rows: tanh on scalar columns, Gumbel-softmax on one-hot spans."""
    u = torch.rand(raw.shape, generator=rng, device=raw.device, dtype=raw.dtype)
    gumbel = -torch.log(-torch.log(u + 1e-20) + 1e-20)
    soft = segment_log_softmax((raw + gumbel) / tau, layout.seg, layout.num_segments).exp()
    return torch.where(layout.is_scalar, torch.tanh(raw), soft)


def cond_cross_entropy(raw: torch.Tensor, cond: torch.Tensor, layout: GanLayout) -> torch.Tensor:
    """Mean over rows of the cross-entropy between the generator's spans and the revealed values."""
    logp = segment_log_softmax(raw, layout.seg, layout.num_segments)
    return -(cond * logp[:, layout.cond_src]).sum(1).mean()


class Residual(nn.Module):
    """Linear -> norm -> ReLU, concatenated with its input (the output widens by `o`)."""

    def __init__(self, i: int, o: int, norm: str):
        super().__init__()
        self.fc = nn.Linear(i, o)
        self.norm = nn.BatchNorm1d(o) if norm == "batch" else nn.LayerNorm(o)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.relu(self.norm(self.fc(x))), x], dim=1)


class IdCalibration(nn.Module):
    """Per-id log draw weights of the encoder's id columns, one buffer `log_weight_k` (C_k,)
    per id column in column order (0 until `Synthesizer.calibrate_ids` fits them after
    training). They correct how often the generator's rows land on each id, so they belong
    to the generator's state, not to the fitted encoder."""

    def __init__(self, num_ids: list[int]):
        super().__init__()
        self.num_ids = list(num_ids)
        for k, c in enumerate(self.num_ids):
            self.register_buffer(f"log_weight_{k}", torch.zeros(c))

    def weights(self) -> list[torch.Tensor]:
        return [getattr(self, f"log_weight_{k}") for k in range(len(self.num_ids))]


class Generator(nn.Module):
    """(noise (B, E), cond (B, Dc)) -> logits (B, D); activations applied outside.

    `num_ids` (ids per id column) gives the sampling generator its `id_calibration`; the
    generator being trained has none (nothing extra for DDP to broadcast)."""

    def __init__(
        self,
        noise_dim: int,
        cond_dim: int,
        dims: list[int],
        data_dim: int,
        norm: str = "batch",
        num_ids: list[int] | None = None,
    ):
        super().__init__()
        self.cond_dim = cond_dim
        self.id_calibration = IdCalibration(num_ids or [])
        blocks, width = [], noise_dim + cond_dim
        for d in dims:
            blocks.append(Residual(width, d, norm))
            width += d
        self.body = nn.Sequential(*blocks)
        self.head = nn.Linear(width, data_dim)

    def forward(self, noise: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            return self.head(self.body(torch.cat([noise, cond], dim=1)))
        return self._forward_inference(noise, cond)

    def _forward_inference(self, noise: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Same result without the growing concatenations: one buffer laid out as
        [h_L, ..., h_1, noise, cond]; each layer reads a contiguous column suffix of it. (The
        critic step's no-grad pass, in training mode; sampling uses `sample`.)"""
        widths = [blk.fc.out_features for blk in self.body]
        total = sum(widths) + noise.shape[1] + cond.shape[1]
        buf = torch.empty(noise.shape[0], total, device=noise.device, dtype=noise.dtype)
        lo = sum(widths)
        buf[:, lo : lo + noise.shape[1]] = noise
        buf[:, lo + noise.shape[1] :] = cond
        for blk, w in zip(self.body, widths):
            buf[:, lo - w : lo] = torch.relu(blk.norm(blk.fc(buf[:, lo:])))
            lo -= w
        return self.head(buf)

    @torch.no_grad()
    def sample(
        self, noise: torch.Tensor, hot: torch.Tensor, columns: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Eval-mode logits for rows whose conditional vector is 1 at the `hot` (n, H) entries
        and 0 elsewhere. The conditional input of every layer is then a sum of H weight columns
        (row lookups into a table that carries 1/H of the biases per entry), so matmuls see
        only noise and hidden units: `generator_flops_per_row` counts those. `columns`: output
        columns in this order (default all, in order)."""
        n, dc = noise.shape[0], self.cond_dim
        if self.training:  # batch statistics: the dense path
            cond = torch.zeros(n, dc, device=noise.device, dtype=noise.dtype)
            cond.scatter_(1, hot, 1.0)
            return self._forward_inference(noise, cond)
        head_t, head_b = self.head.weight.t(), self.head.bias
        if columns is not None:
            head_t, head_b = head_t[:, columns], head_b[columns]
        layers = [self._folded(blk) for blk in self.body] + [(head_t, head_b, None)]
        dense = [w_t[: w_t.shape[0] - dc] for w_t, _, _ in layers]
        bias = torch.cat([b for _, b, _ in layers])
        table = torch.cat([w_t[w_t.shape[0] - dc :] for w_t, _, _ in layers], 1) + bias / max(
            1, hot.shape[1]
        )
        widths = [blk.fc.out_features for blk in self.body]
        out = torch.empty(n, head_t.shape[1], device=noise.device, dtype=noise.dtype)
        buf = torch.empty(
            min(n, INFERENCE_ROWS),
            sum(widths) + noise.shape[1],
            device=noise.device,
            dtype=noise.dtype,
        )
        for r in range(0, n, INFERENCE_ROWS):
            rows = slice(r, min(n, r + INFERENCE_ROWS))
            # (m, all layers' widths): biases + conditional inputs
            pre = (
                table.index_select(0, hot[rows, 0])
                if hot.shape[1]
                else bias.expand(rows.stop - r, -1)
            )
            for j in range(1, hot.shape[1]):
                pre = pre + table.index_select(0, hot[rows, j])
            b = buf[: rows.stop - r]
            lo, col = sum(widths), 0
            b[:, lo:] = noise[rows]
            for (_, _, norm), w_t, w in zip(layers, dense, widths):
                h = b[:, lo - w : lo]
                torch.addmm(pre[:, col : col + w], b[:, lo:], w_t, out=h)
                torch.relu_(h if norm is None else h.copy_(norm(h)))
                lo, col = lo - w, col + w
            torch.addmm(pre[:, col:], b, dense[-1], out=out[rows])
        return out

    @staticmethod
    def _folded(blk: Residual) -> tuple[torch.Tensor, torch.Tensor, nn.Module | None]:
        """(W^T, bias, norm to apply after) of a residual block; eval-mode batch norm is an
        affine map, so it is folded into W and bias and nothing is left to apply."""
        norm = blk.norm
        if isinstance(norm, nn.BatchNorm1d) and not norm.training and norm.running_var is not None:
            scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
            bias = (blk.fc.bias - norm.running_mean) * scale + norm.bias
            return (blk.fc.weight * scale[:, None]).t(), bias, None
        return blk.fc.weight.t(), blk.fc.bias, norm


class Critic(nn.Module):
    """PacGAN critic: `pac` rows (each data + cond) are scored together, (B, in) -> (B/pac, 1)."""

    def __init__(self, in_dim: int, dims: list[int], pac: int, dropout: float):
        super().__init__()
        self.pac, self.in_dim = pac, in_dim
        layers, width = [], in_dim * pac
        for d in dims:
            layers += [nn.Linear(width, d), nn.LeakyReLU(0.2), nn.Dropout(dropout)]
            width = d
        self.net = nn.Sequential(*layers, nn.Linear(width, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.reshape(-1, self.pac * self.in_dim))


def generator_flops_per_row(gen: Generator) -> int:
    """Multiply-adds x 2 per row of the generator's linear layers as `Generator.sample` runs
    them (the FLOP bound's cost): the one-hot conditional inputs are lookups, not matmuls."""
    return sum(
        2 * (m.in_features - gen.cond_dim) * m.out_features
        for m in gen.modules()
        if isinstance(m, nn.Linear)
    )
