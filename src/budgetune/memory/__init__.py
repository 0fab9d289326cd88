"""Memory planning: a model's shape from its config (spec), the memory terms as pure functions (terms), an exact
fake-tensor trace of one training step (trace), and the planner that checks what fits (plan)."""
