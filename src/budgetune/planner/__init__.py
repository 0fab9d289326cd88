"""The planner, above the methods: every registered method's memory (its own memory()), FLOPs per token (its own
flop_kinds()), what fits and what to recommend (plan), and the fake-tensor trace of one real training step set up
by the method's own trace hooks (trace)."""
