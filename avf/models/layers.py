"""Building blocks shared by the AVF-MAE++ encoders, fusion module and decoders.

Attention follows BEiT / VideoMAE: a bias on q and v but none on k. Attention runs through :func:`attention`
(``torch.nn.functional.scaled_dot_product_attention``), except the per-head softmax over a few folded keys in
:meth:`CrossAttention.forward_few_keys`. Layer norms use eps 1e-6 (spec section 1.1).

Memory: a pre-LN step ``Linear(LN(x))`` and a pre-LN MLP ``fc2(GELU(fc1(LN(x))))`` run as fused
autograd functions (:func:`ln_linear`, :func:`ln_mlp`) that keep only ``x`` (and the MLP's pre-activation)
for the backward pass and recompute the LayerNorm output and the GELU in it: the same forward values,
the same gradient formulas, 1 (LN) + 4 (GELU) fewer ``C``-wide tensors per token and block. Under autocast
they also keep the weights they cast, so that backward does not cast them again (autograd does the same
with autocast's own casts). Cross-attention
between a few tokens and many (the LG block's regions and local tokens) folds the many side's projections
into the few side (:meth:`CrossAttention.forward_few_queries`, :meth:`CrossAttention.forward_few_keys`). With
``fused_ops(False)`` every block runs the plain module graph instead (the reference the tests compare to).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import DropPath, Mlp
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from avf.models.packed_linear import linear_gelu
from avf.utils.cpu import has_amx_bf16

__all__ = [
    "LN_EPS",
    "Attention",
    "AudioPatchEmbed",
    "Block",
    "CrossAttention",
    "DropPath",
    "LayerNorm",
    "Mlp",
    "TubeletEmbed",
    "attention",
    "default_device",
    "drop_path_or_identity",
    "fused_ops",
    "gather_audio_patches",
    "gather_video_patches",
    "ln_linear",
    "ln_mlp",
    "ln_mlp_rows",
    "make_mlp",
    "sinusoid_table",
]

LN_EPS = 1e-6
# Read once at import, not in forward: torch.compile cannot trace the CPU-flags file.
UPCAST_CPU_BF16_ATTENTION = not has_amx_bf16()
LayerNorm = partial(nn.LayerNorm, eps=LN_EPS)
# Cross-attention folds the many side's projections into the few side only where the many side has at least
# this many tokens per folded one (H per few-side token). Near one, the folded [N, H * few, C] tensors are as
# large as the projections they replace; base pretraining (3 and 10 visible tokens per audio and video region)
# measured more peak memory folded (docs/performance.md, "Folding the region tokens' projections").
FOLD_MIN_RATIO = 2


def make_mlp(dim: int, mlp_ratio: float = 4.0) -> Mlp:
    """timm ``Mlp`` (fc1 -> GELU -> fc2) with hidden width ``dim * mlp_ratio``."""
    return Mlp(dim, int(dim * mlp_ratio))


def drop_path_or_identity(rate: float) -> nn.Module:
    return DropPath(rate) if rate > 0.0 else nn.Identity()


def sinusoid_table(n_position: int, dim: int) -> Tensor:
    """Fixed 1-D sinusoid table ``[n_position, dim]`` (sin on even, cos on odd channels), float32.

    Computed in float64 on the CPU, then moved to the current default device.
    """
    pos = torch.arange(n_position, dtype=torch.float64, device="cpu")[:, None]
    channel = torch.arange(dim, device="cpu")
    angle = pos * torch.pow(10000.0, -2.0 * (channel // 2).double() / dim)
    table = torch.where(channel % 2 == 0, torch.sin(angle), torch.cos(angle))
    return table.float().to(default_device())


def default_device() -> torch.device:
    """Device that factory functions use right now (honours ``with torch.device(...)`` contexts)."""
    return torch.empty(0).device


def _split_heads(x: Tensor, num_heads: int) -> Tensor:
    """``[N, L, H*d] -> [N, H, L, d]``."""
    n, length, _ = x.shape
    return x.view(n, length, num_heads, -1).transpose(1, 2)


def _merge_heads(x: Tensor) -> Tensor:
    """``[N, H, L, d] -> [N, L, H*d]``."""
    n, _, length, _ = x.shape
    return x.transpose(1, 2).reshape(n, length, -1)


_FUSED = [True]


@contextlib.contextmanager
def fused_ops(enabled: bool = True) -> Iterator[None]:
    """Switch the fused LN+Linear / LN+MLP functions and the folded cross-attention on or off inside the
    block (global)."""
    old = _FUSED[0]
    _FUSED[0] = enabled
    try:
        yield
    finally:
        _FUSED[0] = old


def _cast_dtype(x: Tensor) -> torch.dtype | None:
    """The autocast dtype of ``x``'s device when autocast is on (None: no cast)."""
    dev = x.device.type
    return torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else None


def _cast(t: Tensor | None, dtype: torch.dtype | None) -> Tensor | None:
    return t if t is None or dtype is None else t.to(dtype)


def _layer_norm(x: Tensor, norm: nn.LayerNorm) -> tuple[Tensor, Tensor, Tensor]:
    return torch.native_layer_norm(x, norm.normalized_shape, norm.weight, norm.bias, norm.eps)


def _flat(t: Tensor) -> Tensor:
    return t.reshape(-1, t.shape[-1])


def _ln_backward(
    grad_y: Tensor, x: Tensor, norm: nn.LayerNorm, mean: Tensor, rstd: Tensor, needs: tuple[bool, ...]
) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    mask = [needs[0], needs[1] and norm.weight is not None, needs[2] and norm.bias is not None]
    return torch.ops.aten.native_layer_norm_backward(
        grad_y, x, norm.normalized_shape, mean, rstd, norm.weight, norm.bias, mask
    )


class _LNLinear(torch.autograd.Function):
    """``F.linear(LN(x), w, b)`` that saves ``x`` (not ``LN(x)``) and recomputes the norm in backward.

    Autocast is applied by hand as the autocast graph would (LN in float32, the linear in the autocast
    dtype, parameter gradients in the parameters' dtype).
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, x: Tensor, ln_w: Tensor, ln_b: Tensor, w: Tensor, b: Tensor | None, norm: nn.LayerNorm,
        cast: torch.dtype | None,
    ) -> Tensor:  # fmt: skip
        with torch.autocast(x.device.type, enabled=False):
            xf = x.float() if cast is not None else x
            y, mean, rstd = _layer_norm(xf, norm)
            wc = _cast(w, cast)
            out = F.linear(_cast(y, cast), wc, _cast(b, cast))
        ctx.save_for_backward(x, mean, rstd, wc)
        ctx.norm, ctx.cast, ctx.has_bias, ctx.w_dtype = norm, cast, b is not None, w.dtype
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        x, mean, rstd, wc = ctx.saved_tensors
        norm, cast, w_dtype = ctx.norm, ctx.cast, ctx.w_dtype
        needs = ctx.needs_input_grad
        with torch.autocast(x.device.type, enabled=False):
            xf = x.float() if cast is not None else x
            g = _flat(grad)
            grad_w = grad_b = None
            if needs[3]:
                y = _cast(_layer_norm(xf, norm)[0], cast)
                grad_w = g.t().mm(_flat(y)).to(w_dtype)
            if needs[4] and ctx.has_bias:
                grad_b = g.sum(0).to(w_dtype)
            grad_x = grad_lw = grad_lb = None
            if needs[0] or needs[1] or needs[2]:
                grad_y = g.mm(wc).view(*grad.shape[:-1], wc.shape[1]).to(xf.dtype)
                grad_x, grad_lw, grad_lb = _ln_backward(grad_y, xf, norm, mean, rstd, needs[:3])
                grad_x = grad_x.to(x.dtype) if grad_x is not None else None
        return grad_x, grad_lw, grad_lb, grad_w, grad_b, None, None


class _LNMlp(torch.autograd.Function):
    """``fc2(GELU(fc1(LN(x))))`` over the rows of one or more inputs ``xs`` in one set of matmuls; saves the
    inputs and ``fc1``'s output, and recomputes LN and GELU in backward."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, norm: nn.LayerNorm, cast: torch.dtype | None, ln_w: Tensor, ln_b: Tensor, w1: Tensor, b1: Tensor,
        w2: Tensor, b2: Tensor, *xs: Tensor,
    ) -> tuple[Tensor, ...]:  # fmt: skip
        with torch.autocast(xs[0].device.type, enabled=False):
            x = _rows(xs)
            xf = x.float() if cast is not None else x
            y, mean, rstd = _layer_norm(xf, norm)
            w1c, w2c = _cast(w1, cast), _cast(w2, cast)
            h = F.linear(_cast(y, cast), w1c, _cast(b1, cast))
            out = F.linear(F.gelu(h), w2c, _cast(b2, cast))  # GELU in h's dtype, as autocast
        # the casts are saved, not redone in backward, as autograd saves autocast's own
        ctx.save_for_backward(mean, rstd, h, w1c, w2c, *xs)
        ctx.norm, ctx.cast, ctx.w_dtype = norm, cast, w1.dtype
        return _split_rows(out, xs)

    @staticmethod
    def backward(ctx: Any, *grads: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        mean, rstd, h, w1c, w2c, *xs = ctx.saved_tensors
        norm, cast, w_dtype = ctx.norm, ctx.cast, ctx.w_dtype
        needs = ctx.needs_input_grad
        with torch.autocast(h.device.type, enabled=False):
            x = _rows(xs)
            xf = x.float() if cast is not None else x
            g = _rows(grads)
            grad_w2 = g.t().mm(F.gelu(h)).to(w_dtype) if needs[6] else None
            grad_b2 = g.sum(0).to(w_dtype) if needs[7] else None
            grad_h = torch.ops.aten.gelu_backward(g.mm(w2c), h)
            grad_w1 = grad_b1 = None
            if needs[4]:
                y = _cast(_layer_norm(xf, norm)[0], cast)
                grad_w1 = grad_h.t().mm(y).to(w_dtype)
            if needs[5]:
                grad_b1 = grad_h.sum(0).to(w_dtype)
            grad_xs: tuple[Tensor | None, ...] = (None,) * len(xs)
            grad_lw = grad_lb = None
            if any(needs[2:4]) or any(needs[8:]):
                grad_y = grad_h.mm(w1c).to(xf.dtype)
                grad_x, grad_lw, grad_lb = _ln_backward(grad_y, xf, norm, mean, rstd, (any(needs[8:]), *needs[2:4]))
                if grad_x is not None:
                    grad_xs = tuple(gx.to(xi.dtype) for gx, xi in zip(_split_rows(grad_x, xs), xs, strict=True))
        return None, None, grad_lw, grad_lb, grad_w1, grad_b1, grad_w2, grad_b2, *grad_xs


def _rows(xs: Sequence[Tensor]) -> Tensor:
    """The rows of every ``x [..., C]`` as one ``[R, C]`` (a view for one contiguous input)."""
    return _flat(xs[0]) if len(xs) == 1 else torch.cat([_flat(x) for x in xs])


def _split_rows(rows: Tensor, like: Sequence[Tensor]) -> tuple[Tensor, ...]:
    """``rows [R, C']`` back into tensors shaped like ``like`` (last dimension ``C'``), views of ``rows``."""
    if len(like) == 1:
        return (rows.view(*like[0].shape[:-1], rows.shape[-1]),)
    counts = [x[..., 0].numel() for x in like]
    return tuple(r.view(*x.shape[:-1], rows.shape[-1]) for r, x in zip(rows.split(counts), like, strict=True))


def ln_linear(x: Tensor, norm: nn.LayerNorm, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``F.linear(norm(x), weight, bias)``; keeps only ``x`` for backward when the fused path is on."""
    if not (_FUSED[0] and torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)):
        return F.linear(norm(x), weight, bias)
    return _LNLinear.apply(x, norm.weight, norm.bias, weight, bias, norm, _cast_dtype(x))


def ln_mlp(x: Tensor, norm: nn.LayerNorm, mlp: Mlp) -> Tensor:
    """``mlp(norm(x))`` for timm's ``Mlp`` with exact GELU and no dropout; fused like :func:`ln_linear`."""
    return ln_mlp_rows((x,), norm, mlp)[0]


def ln_mlp_rows(xs: Sequence[Tensor], norm: nn.LayerNorm, mlp: Mlp) -> tuple[Tensor, ...]:
    """:func:`ln_mlp` of each ``x [..., C]`` in ``xs``, with their rows in one set of matmuls when fused.

    One matmul over all rows runs faster than one per input (the LG block's K region tokens per sample are
    a few rows), and every weight is cast once under autocast. The rows are concatenated in forward and
    again in backward (``[R, C]`` temporaries); an output that is not used gets a zero gradient for its
    input, not None.
    """
    if not _FUSED[0]:
        return tuple(mlp(norm(x)) for x in xs)
    fc1, fc2 = mlp.fc1, mlp.fc2
    if not (torch.is_grad_enabled() and (any(x.requires_grad for x in xs) or fc1.weight.requires_grad)):
        return _split_rows(fc2(linear_gelu(norm(_rows(xs)), fc1.weight, fc1.bias)), xs)
    params = (norm.weight, norm.bias, fc1.weight, fc1.bias, fc2.weight, fc2.bias)
    return _LNMlp.apply(norm, _cast_dtype(xs[0]), *params, *xs)


def attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """``softmax(q k^T / sqrt(d)) v`` by SDPA: ``q [..., Lq, d]``, ``k, v [..., Lk, d]`` -> ``[..., Lq, d]``.

    Attention that would run in bf16 on a CPU without AMX runs in fp32 and returns bf16: there PyTorch's
    CPU flash kernel is slower in bf16 than in fp32 (docs/performance.md, "bf16 training on the CPU").
    """
    if q.device.type == "cpu" and UPCAST_CPU_BF16_ATTENTION and torch.bfloat16 in (q.dtype, _cast_dtype(q)):
        with torch.autocast("cpu", enabled=False):
            return F.scaled_dot_product_attention(q.float(), k.float(), v.float()).to(torch.bfloat16)
    return F.scaled_dot_product_attention(q, k, v)


class Attention(nn.Module):
    """Multi-head self-attention with one fused qkv projection, q/v bias and no k bias.

    Parameters: ``qkv.weight [3C, C]``, ``q_bias [C]``, ``v_bias [C]``, ``proj`` (4C^2 + 3C in all).
    """

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.register_buffer("k_bias", torch.zeros(dim), persistent=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, norm: nn.LayerNorm | None = None) -> Tensor:
        """``x [N, L, C] -> [N, L, C]``; with ``norm``, attends over ``norm(x)`` (fused, see ``ln_linear``)."""
        n, length, _ = x.shape
        bias = torch.cat((self.q_bias, self.k_bias, self.v_bias))
        qkv = F.linear(x, self.qkv.weight, bias) if norm is None else ln_linear(x, norm, self.qkv.weight, bias)
        qkv = qkv.view(n, length, 3, self.num_heads, -1)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        return self.proj(_merge_heads(attention(q, k, v)))


class CrossAttention(nn.Module):
    """Multi-head cross-attention: queries from ``x``, keys/values from ``context``.

    Parameters: ``q.weight [C, C]``, ``kv.weight [2C, C]``, ``q_bias``, ``v_bias``, ``proj`` (4C^2 + 3C).
    """

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim, bias=False)
        self.kv = nn.Linear(dim, dim * 2, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.register_buffer("k_bias", torch.zeros(dim), persistent=False)
        self.proj = nn.Linear(dim, dim)

    def forward(
        self, x: Tensor, context: Tensor, norm: nn.LayerNorm | None = None, ctx_norm: nn.LayerNorm | None = None
    ) -> Tensor:
        """``x [N, Lq, C]``, ``context [N, Lk, C]`` -> ``[N, Lq, C]``; ``norm`` / ``ctx_norm`` are applied to
        ``x`` / ``context`` first when given (fused, see ``ln_linear``)."""
        q = F.linear(x, self.q.weight, self.q_bias) if norm is None else ln_linear(x, norm, self.q.weight, self.q_bias)
        return self.attend(q, context, ctx_norm)

    def attend(self, q: Tensor, context: Tensor, ctx_norm: nn.LayerNorm | None = None) -> Tensor:
        """Attention and output projection from projected queries ``q [N, Lq, C]`` (with bias)."""
        k, v = self._keys_values(context, ctx_norm)
        return self.proj(_merge_heads(attention(_split_heads(q, self.num_heads), k, v)))

    def _keys_values(self, context: Tensor, ctx_norm: nn.LayerNorm | None) -> tuple[Tensor, Tensor]:
        """``context [N, Lk, C]`` (normed by ``ctx_norm`` when given) -> keys and values ``[N, H, Lk, d]``."""
        n, lk, _ = context.shape
        bias = torch.cat((self.k_bias, self.v_bias))
        if ctx_norm is None:
            kv = F.linear(context, self.kv.weight, bias)
        else:
            kv = ln_linear(context, ctx_norm, self.kv.weight, bias)
        k, v = kv.view(n, lk, 2, self.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        return k, v

    def forward_few_queries(self, x: Tensor, context: Tensor, norm: nn.LayerNorm, ctx_norm: nn.LayerNorm) -> Tensor:
        """:meth:`forward` for a few queries over many context tokens, without projecting the context.

        ``x [N, Lq, C]``, ``context [N, Lk, C]`` -> ``[N, Lq, C]``. Per head ``h``, ``q_h . (W_k,h y) =
        (W_k,h^T q_h) . y`` and ``sum_j p_j (W_v,h y_j + b_v,h) = W_v,h (sum_j p_j y_j) + b_v,h``, with ``y =
        ctx_norm(context)`` (a key bias would only add a per-query constant, which softmax cancels). So the
        ``H * Lq`` folded queries attend over ``y`` itself, width C: the ``2 C^2`` key and value projections per
        context token are replaced by ``2 H Lq C`` per context token, and, with gradients, ``y`` and the
        attention are recomputed in backward, so nothing context-sized is saved. Same values as
        :meth:`forward` up to float rounding. With fewer than ``FOLD_MIN_RATIO * H * Lq`` context tokens, or
        with ``fused_ops(False)``, it is :meth:`forward`.
        """
        n, lq, c = x.shape
        h = self.num_heads
        if not (_FUSED[0] and context.shape[1] >= FOLD_MIN_RATIO * h * lq):
            return self.forward(x, context, norm, ctx_norm)
        q = ln_linear(x, norm, self.q.weight, self.q_bias).view(n, lq, h, c // h)
        w_k, w_v = self.kv.weight.view(2, h, c // h, c).unbind(0)
        # SDPA scales by 1/sqrt(C) for width-C queries; the heads' scale is 1/sqrt(C/H)
        q_ctx = torch.einsum("nlhd,hdc->nlhc", q, w_k).mul(math.sqrt(h)).reshape(n, 1, lq * h, c)
        read = _recomputed(_attend_normed, q_ctx, context, ctx_norm)
        out = torch.einsum("nlhc,hdc->nlhd", read.view(n, lq, h, c), w_v) + self.v_bias.view(h, -1)
        return self.proj(out.reshape(n, lq, c))

    def forward_few_keys(self, x: Tensor, context: Tensor, norm: nn.LayerNorm, ctx_norm: nn.LayerNorm) -> Tensor:
        """:meth:`forward` for many queries over a few context tokens, without projecting the queries.

        ``x [N, ..., C]`` (queries, any layout), ``context [N, Lk, C]`` -> ``[N, Lq, C]`` with ``Lq`` the query
        count, in ``x``'s order. Per head ``h``, ``(W_q,h y + b_q,h) . k_h =
        y . (W_q,h^T k_h) + b_q,h . k_h`` with ``y = norm(x)``: the ``C^2`` query projection per query token
        is replaced by ``H Lk C`` scores against the folded keys, and, with gradients, ``y``, the scores and
        the attention are recomputed in backward, so of the queries' size only the output is saved (for
        ``proj``). Same values as :meth:`forward` up to float rounding. With fewer than ``FOLD_MIN_RATIO * H *
        Lk`` queries, or with ``fused_ops(False)``, the queries are projected as in :meth:`forward`.
        """
        n, lk, c = context.shape
        h = self.num_heads
        if not (_FUSED[0] and x[0].numel() >= FOLD_MIN_RATIO * h * lk * c):
            return self.attend(ln_linear(x, norm, self.q.weight, self.q_bias).view(n, -1, c), context, ctx_norm)
        k, v = self._keys_values(context, ctx_norm)
        scale = 1.0 / math.sqrt(c // h)
        keys = torch.einsum("nhkd,hdc->nhkc", k, self.q.weight.view(h, c // h, c)).mul(scale).reshape(n, h * lk, c)
        bias = torch.einsum("nhkd,hd->nhk", k, self.q_bias.view(h, -1)).mul(scale).reshape(n, 1, h * lk)
        out = _recomputed(_attend_folded_keys, x, norm, keys, bias, v)
        return self.proj(out)


def _recomputed(fn: Callable[..., Tensor], *args: Any) -> Tensor:
    """``fn(*args)``; under autograd its intermediate tensors are recomputed in backward, not saved."""
    if torch.is_grad_enabled() and any(isinstance(a, Tensor) and a.requires_grad for a in args):
        return checkpoint(fn, *args, use_reentrant=False, preserve_rng_state=False)
    return fn(*args)


def _attend_normed(q: Tensor, context: Tensor, norm: nn.LayerNorm) -> Tensor:
    """``attention(q, y, y)`` with ``y = norm(context)``: ``q [N, 1, Lq, C]``, ``context [N, Lk, C]`` ->
    ``[N, 1, Lq, C]``."""
    y = norm(context).unsqueeze(1)
    return attention(q, y, y)


def _attend_folded_keys(x: Tensor, norm: nn.LayerNorm, keys: Tensor, bias: Tensor, v: Tensor) -> Tensor:
    """Per-head attention of ``norm(x)`` over folded keys: ``x [N, ..., C]``, ``keys [N, H*Lk, C]``, ``bias
    [N, 1, H*Lk]``, ``v [N, H, Lk, d]`` -> ``[N, Lq, H*d]``."""
    n, c = x.shape[0], x.shape[-1]
    _, h, lk, _ = v.shape
    y = norm(x).view(n, -1, c)  # the norm's output is contiguous, so strided queries need no copy of their own
    lq = y.shape[1]
    scores = torch.baddbmm(bias, y, keys.transpose(1, 2))  # [N, Lq, H*Lk]
    p = scores.view(n, lq, h, lk).softmax(-1, dtype=torch.promote_types(scores.dtype, torch.float32)).to(v.dtype)
    return torch.einsum("nqhk,nhkd->nqhd", p, v).reshape(n, lq, c)


class Block(nn.Module):
    """Pre-LN Transformer block: ``x + SA(LN(x))`` then ``x + MLP(LN(x))`` (12C^2 + 12C parameters)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, drop_path: float = 0.0) -> None:
        super().__init__()
        self.norm1 = LayerNorm(dim)
        self.attn = Attention(dim, num_heads)
        self.norm2 = LayerNorm(dim)
        self.mlp = make_mlp(dim, mlp_ratio)
        self.drop_path = drop_path_or_identity(drop_path)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop_path(self.attn(x, self.norm1))
        return x + self.drop_path(ln_mlp(x, self.norm2, self.mlp))


def gather_video_patches(video: Tensor, index: Tensor, grid: tuple[int, int, int]) -> Tensor:
    """Cut tubelets at flat token positions ``index`` without patchifying the rest of the clip.

    Args:
        video: ``[B, 3, T, H, W]``.
        index: ``[B, n]`` flat (t, h, w) token positions on ``grid``.
        grid: token grid ``(t, h, w)``.

    Returns:
        ``[B, n, 3, pt, ph, pw]`` (the Conv3d weight layout).
    """
    b, c, t, h, w = video.shape
    gt, gh, gw = grid
    pt, ph, pw = t // gt, h // gh, w // gw
    view = video.view(b, c, gt, pt, gh, ph, gw, pw).permute(0, 2, 4, 6, 1, 3, 5, 7)
    it = torch.div(index, gh * gw, rounding_mode="floor")
    ih = torch.div(index, gw, rounding_mode="floor") % gh
    iw = index % gw
    rows = torch.arange(b, device=video.device)[:, None]
    return view[rows, it, ih, iw]


def gather_audio_patches(audio: Tensor, index: Tensor, grid: tuple[int, int]) -> Tensor:
    """Cut fbank patches at flat (time, freq) token positions ``index``.

    Args:
        audio: ``[B, 1, T, F]``.
        index: ``[B, n]`` flat token positions on ``grid``.
        grid: token grid ``(time, freq)``.

    Returns:
        ``[B, n, 1, pt, pf]`` (the Conv2d weight layout).
    """
    b, c, t, f = audio.shape
    gt, gf = grid
    pt, pf = t // gt, f // gf
    view = audio.view(b, c, gt, pt, gf, pf).permute(0, 2, 4, 1, 3, 5)
    rows = torch.arange(b, device=audio.device)[:, None]
    return view[rows, torch.div(index, gf, rounding_mode="floor"), index % gf]


class TubeletEmbed(nn.Module):
    """Conv3d tubelet embedding (kernel = stride = (2, 16, 16)) applied to selected tokens only.

    The convolution is evaluated as a linear map on gathered tubelets, so hidden patches are never
    embedded. Parameters are those of ``nn.Conv3d(3, C, (2, 16, 16))``.
    """

    def __init__(
        self,
        dim: int,
        in_chans: int = 3,
        num_frames: int = 16,
        img_size: int = 160,
        patch_size: int = 16,
        tubelet: int = 2,
    ) -> None:
        super().__init__()
        self.grid = (num_frames // tubelet, img_size // patch_size, img_size // patch_size)
        self.num_patches = math.prod(self.grid)
        self.proj = nn.Conv3d(in_chans, dim, (tubelet, patch_size, patch_size), (tubelet, patch_size, patch_size))

    def forward(self, video: Tensor, index: Tensor) -> Tensor:
        """``video [B, 3, T, H, W]``, ``index [B, n]`` -> tokens ``[B, n, C]``."""
        patches = gather_video_patches(video, index, self.grid).flatten(2)
        return F.linear(patches, self.proj.weight.flatten(1), self.proj.bias)


class AudioPatchEmbed(nn.Module):
    """Conv2d 16x16 / stride 16 fbank patch embedding, applied to selected tokens only."""

    def __init__(self, dim: int, in_chans: int = 1, input_size: tuple[int, int] = (256, 128), patch: int = 16):
        super().__init__()
        self.grid = (input_size[0] // patch, input_size[1] // patch)
        self.num_patches = math.prod(self.grid)
        self.proj = nn.Conv2d(in_chans, dim, patch, patch)

    def forward(self, audio: Tensor, index: Tensor) -> Tensor:
        """``audio [B, 1, T, F]``, ``index [B, n]`` -> tokens ``[B, n, C]``."""
        patches = gather_audio_patches(audio, index, self.grid).flatten(2)
        return F.linear(patches, self.proj.weight.flatten(1), self.proj.bias)
