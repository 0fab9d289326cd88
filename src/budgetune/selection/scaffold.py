"""What every scorer shares, written once: a scorer file keeps only what is its own (its Config, `score`, its cost
model).

`@scorer` on a scorer module's `Scorer` class gives it the protocol's attributes from the module's constants (NAME,
NEEDS_MODEL, DEFAULT_STRATEGY), an `__init__(config)` that keeps its Config, and refuses in one line, before `score`
runs, a missing model (NEEDS_MODEL) or an empty target set (NEEDS_TARGET) — the same refusals `selection.select`
makes, so a scorer called directly behaves as one called through it.
"""

from __future__ import annotations

import functools
import sys

from ..errors import UserError


def scorer(cls: type) -> type:
    module = sys.modules[cls.__module__]
    cls.name, cls.needs_model, cls.default_strategy = module.NAME, module.NEEDS_MODEL, module.DEFAULT_STRATEGY
    needs_target = getattr(module, "NEEDS_TARGET", False)
    if "__init__" not in cls.__dict__:
        def __init__(self, config) -> None:
            self.config = config

        cls.__init__ = __init__
    own = cls.score

    @functools.wraps(own)
    def score(self, model, pool, target):
        if cls.needs_model and model is None:
            from .forward import require_model

            require_model(model, cls.name)
        if needs_target and not target:
            raise UserError(f"scorer '{cls.name}' needs target examples; the target set is empty")
        return own(self, model, pool, target)

    cls.score = score
    return cls
