"""Memory of the model states as pure functions: stored weights (in every format), gradients, optimizer states and
the optimizer step's temporaries, their division over data-parallel ranks, and the peak of a backprop step that
puts them together with the activations (activations.py). terms.py re-exports every name."""

from __future__ import annotations

from ..errors import UserError
from .shape import MemoryBreakdown, Shape
from .spec import ModelSpec

# QLoRA (Dettmers et al. 2023, §3 "Double Quantization"): NF4 with block size 64 stores 4 bits per weight plus one
# 32-bit absmax per block (0.5 bit/param); double quantisation stores those constants in 8 bits with one fp32
# constant per 256 blocks: 8/64 + 32/(64·256) = 0.127 bit/param.
NF4_BLOCK = 64
NF4_DQ_BLOCK = 256
# bitsandbytes' 8-bit optimizers quantise each state in blocks of 256 values, one fp32 absmax each
# (bitsandbytes/optim/optimizer.py, Optimizer8bit.init_state: blocksize = 256; the paper's 2048 is not what runs).
ADAM8_BLOCK = 256
WEIGHT_FORMATS = {"fp32": 4.0, "bf16": 2.0, "fp16": 2.0, "int8": 1.0, "nf4": 0.5, "fp4": 0.5}
# A torch dtype's name (str(dtype) without 'torch.') as a WEIGHT_FORMATS key: the one map from dtypes to formats.
DTYPE_FORMATS = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}


def weight_bytes(n_params: int, fmt: str = "fp32") -> int:
    """Stored weights: 4/2/1 bytes per parameter; NF4/FP4 0.5 plus the quantisation constants (QLoRA §3)."""
    if fmt not in WEIGHT_FORMATS:
        raise UserError(f"weight format '{fmt}' is not known; use one of {', '.join(WEIGHT_FORMATS)}")
    if fmt in ("nf4", "fp4"):
        blocks = -(-n_params // NF4_BLOCK)
        # bitsandbytes with double quantisation: uint8 absmax per block, fp32 absmax and offset per 256 blocks.
        return n_params // 2 + n_params % 2 + blocks + 4 * -(-blocks // NF4_DQ_BLOCK) + 4
    if fmt == "int8":
        return n_params  # LLM.int8 row scales (one fp32 per output row) are added by the caller that knows rows
    return int(n_params * WEIGHT_FORMATS[fmt])


def gradient_bytes(n_trainable: int, dtype: str = "fp32") -> int:
    """One gradient per trainable parameter, in the parameter's dtype (PyTorch autograd)."""
    return int(n_trainable * WEIGHT_FORMATS[dtype])


def adam_state_bytes(n_trainable: int, fmt: str = "fp32") -> int:
    """Adam's two moments: 2×4 B (fp32), 2×2 B (bf16 params: torch keeps states in the parameter dtype), or
    2×1 B + one fp32 absmax per ADAM8_BLOCK-value block per state (bitsandbytes 8-bit block-wise, Dettmers et al.
    2022)."""
    if fmt == "8bit":
        return 2 * n_trainable + 2 * 4 * -(-n_trainable // ADAM8_BLOCK)
    return int(2 * n_trainable * WEIGHT_FORMATS[fmt])


def optimizer_step_temp_bytes(n_trainable: int, fmt: str = "fp32") -> int:
    """Transient inside AdamW.step: the foreach implementation (PyTorch's default on GPU) allocates
    sqrt(exp_avg_sq) for every parameter at once (torch/optim/adam.py `_multi_tensor_adam`)."""
    if fmt == "8bit":
        return 0  # bitsandbytes updates in place, block by block
    return int(n_trainable * WEIGHT_FORMATS[fmt])



def shard(shape: Shape, *, weights: int, gradients: int, optimizer: int) -> tuple[int, int, int]:
    """Per-rank model states under ZeRO (Rajbhandari et al. 2020, §5: stage 2 partitions gradients and optimizer
    states, stage 3 also the parameters) or FSDP full sharding (= stage 3)."""
    n = shape.ranks
    if n <= 1 or shape.sharding == "none":
        return weights, gradients, optimizer
    if shape.sharding == "zero2":
        return weights, -(-gradients // n), -(-optimizer // n)
    return -(-weights // n), -(-gradients // n), -(-optimizer // n)


def runtime_overhead(shape: Shape, subtotal: int) -> int:
    """Fixed overhead (CUDA context ≈ 0.3–0.5 GiB, cuBLAS workspaces) plus allocator slack as a share."""
    return int(shape.overhead_bytes + shape.fragmentation * subtotal)


def autocast_cache_bytes(n_matmul_params: int, precision: str) -> int:
    """torch.autocast keeps a bf16 copy of every fp32 leaf weight it casts (the linear layers), until the autocast
    region exits (aten/src/ATen/autocast_mode.cpp `cached_cast`): 2 B per fp32 trainable matrix parameter."""
    return 2 * n_matmul_params if precision == "amp_bf16" else 0


def first_order_peak(spec: ModelSpec, shape: Shape, *, weights: int, n_trainable: int, state_fmt: str,
                     activations: int, cache: int = 0, adam: bool = True, notes: tuple[str, ...] = ()
                     ) -> MemoryBreakdown:
    """The peak of a backprop step, which falls in one of two phases (the tracer shows both):
    - end of forward / start of backward: weights + optimizer states + saved activations + the autocast cache
      (gradients are None then: zero_grad(set_to_none=True) after each step);
    - optimizer.step: weights + gradients + optimizer states + the step's temporaries (activations are freed).
    Gradients, optimizer states and (ZeRO-3/FSDP) weights are divided over data-parallel ranks."""
    g = gradient_bytes(n_trainable, state_fmt)
    o = adam_state_bytes(n_trainable, state_fmt) if adam else 0
    temp = optimizer_step_temp_bytes(n_trainable, state_fmt) if adam else 0
    w, g, o = shard(shape, weights=weights, gradients=g, optimizer=o)
    temp = -(-temp // shape.ranks) if shape.sharding != "none" else temp
    backward = MemoryBreakdown(weights=w, optimizer=o, activations=activations, other=cache, notes=notes)
    step = MemoryBreakdown(weights=w, gradients=g, optimizer=o, other=temp, notes=notes)
    peak = backward if backward.total >= step.total else step
    return peak.plus(other=runtime_overhead(shape, peak.total))
