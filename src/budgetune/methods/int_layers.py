"""Integer linear layers for the quantised-training methods: PEQA's packed b-bit codes with trainable per-row scales
(methods/peqa.py) and DQT's int8 codes on a fixed grid updated by stochastic rounding (methods/dqt.py).

Kept apart from the method modules so the planner can read their memory models without importing torch.
"""

from __future__ import annotations

import torch
from torch import nn


def quantize_rows(w, bits: int):
    """(codes uint8, scale, zero) with w ≈ scale·(codes − zero), per row, round-to-nearest (PEQA §3.1)."""
    levels = 2 ** bits - 1
    lo = w.amin(dim=1, keepdim=True).clamp(max=0)
    hi = w.amax(dim=1, keepdim=True).clamp(min=0)
    scale = ((hi - lo) / levels).clamp(min=1e-8)
    zero = torch.round(-lo / scale)
    codes = torch.clamp(torch.round(w / scale) + zero, 0, levels).to(torch.uint8)
    return codes, scale.float(), zero.float()


def pack(codes):
    """Two 4-bit codes per byte along each row (a row of odd length gets one zero code of padding)."""
    if codes.shape[1] % 2:
        codes = torch.nn.functional.pad(codes, (0, 1))
    return (codes[:, 0::2] << 4) | codes[:, 1::2]


def unpack(packed, n: int):
    out = torch.stack(((packed >> 4) & 15, packed & 15), dim=-1).reshape(packed.shape[0], -1)
    return out[:, :n]


class _IntegerMatmul(torch.autograd.Function):
    """u = x·(W̄ − z)ᵀ; backward re-expands the codes for ∂L/∂x and keeps nothing of x."""

    @staticmethod
    def forward(ctx, x, packed, zero, n):
        ctx.save_for_backward(packed, zero)
        ctx.n = n
        return x @ (unpack(packed, n).to(x.dtype) - zero.to(x.dtype)).t()

    @staticmethod
    def backward(ctx, grad):
        packed, zero = ctx.saved_tensors
        return grad @ (unpack(packed, ctx.n).to(grad.dtype) - zero.to(grad.dtype)), None, None, None


class QuantLinear(nn.Linear):
    """A linear layer stored as packed b-bit codes per output channel; only its scales train.

    A subclass of nn.Linear so the FLOP profile and module searches see a linear of in×out; its `weight` is the
    frozen uint8 code matrix (as bitsandbytes' 4-bit layers hold packed codes in theirs)."""

    def __init__(self, linear, bits: int):
        nn.Module.__init__(self)
        self.in_features, self.out_features, self.bits = linear.in_features, linear.out_features, bits
        codes, scale, zero = quantize_rows(linear.weight.detach().float(), bits)
        self.weight = nn.Parameter(pack(codes), requires_grad=False)
        self.register_buffer("zero", zero)
        self.scale = nn.Parameter(scale)
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone(), requires_grad=False)

    def codes(self):
        return unpack(self.weight, self.in_features)

    def dequantized(self):
        return self.scale * (self.codes().float() - self.zero)

    def forward(self, x):
        u = _IntegerMatmul.apply(x, self.weight, self.zero, self.in_features)
        y = u * self.scale.t().to(u.dtype)
        return y if self.bias is None else y + self.bias


def decoder_linears(model) -> list[tuple[str, object]]:
    from ..flops import _decoder_layers

    layers = {id(m) for layer in _decoder_layers(model) for m in layer.modules()}
    return [(n, m) for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and id(m) in layers]


class _GridMatmul(torch.autograd.Function):
    """y = x·(s ⊙ W̄)ᵀ; backward adds ∂L/∂W = Σ_t δ_t x_tᵀ to the layer's float gradient."""

    @staticmethod
    def forward(ctx, x, codes, scale, layer, anchor):
        ctx.save_for_backward(x, codes, scale)
        ctx.layer = layer
        return x @ (codes.to(x.dtype) * scale.to(x.dtype)).t()

    @staticmethod
    def backward(ctx, grad):
        x, codes, scale = ctx.saved_tensors
        g = grad.reshape(-1, grad.shape[-1]).t().float() @ x.reshape(-1, x.shape[-1]).float()
        layer = ctx.layer
        layer.grad_w = g if layer.grad_w is None else layer.grad_w.add_(g)
        gx = grad @ (codes.to(grad.dtype) * scale.to(grad.dtype)) if ctx.needs_input_grad[0] else None
        return gx, None, None, None, None


_ANCHOR: dict = {}


def _anchor():
    """A leaf that requires grad, passed to every layer so autograd reaches it even where nothing below trains
    (the first layer's q/k/v read the frozen embedding's output)."""
    if "t" not in _ANCHOR:
        _ANCHOR["t"] = torch.zeros((), requires_grad=True)
    return _ANCHOR["t"]


class GridLinear(nn.Linear):
    """A linear layer whose weight lives only as int8 codes on a fixed per-row grid (see the module docstring)."""

    def __init__(self, linear, bits: int):
        nn.Module.__init__(self)
        self.in_features, self.out_features, self.bits = linear.in_features, linear.out_features, bits
        qmax = 2 ** (bits - 1) - 1
        w = linear.weight.detach().float()
        scale = (w.abs().amax(dim=1, keepdim=True) / qmax).clamp(min=1e-8)
        self.weight = nn.Parameter(torch.clamp(torch.round(w / scale), -qmax, qmax).to(torch.int8),
                                   requires_grad=False)
        self.register_buffer("scale", scale)
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone(), requires_grad=False)
        self.grad_w = None

    @property
    def qmax(self) -> int:
        return 2 ** (self.bits - 1) - 1

    def dequantized(self):
        return self.weight.float() * self.scale

    def forward(self, x):
        y = _GridMatmul.apply(x, self.weight, self.scale, self, _anchor())
        return y if self.bias is None else y + self.bias


def stochastic_round(x, generator):
    floor = torch.floor(x)
    return floor + (torch.rand(x.shape, generator=generator, device=x.device) < (x - floor)).to(x.dtype)
