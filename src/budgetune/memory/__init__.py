"""Memory at the bottom of the stack: a model's shape from its config (spec), the memory terms as pure functions
(terms), and what real work allocates (peak, measure). The planner that checks what fits, and the fake-tensor
trace of one training step, sit above the methods in budgetune.planner."""
