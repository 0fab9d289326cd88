"""Budget-aware inference: generation with FLOP and KV-cache accounting, speculative decoding, capacity planning
and generation-based evaluation. Submodules import torch/transformers lazily."""
