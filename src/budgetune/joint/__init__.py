"""One plan for the whole run: memory, data and compute decided together from the budgets, before any weight is
loaded.

From the memory available, the FLOP budget, the model's config and the tokenized data, `make_plan` decides the
method, precision, micro-batch, accumulation and checkpointing (memory.py); what the evaluations cost, the FLOPs
reserved for the final evaluation, and whether the budget can pay for one step at all (compute.py); whether to
select data and how (data.py, through selection/auto.py); and the governor with its evaluation schedule
(governing.py, through train/evalplan.py). Every choice carries one reason and says whether the user gave it.
`budgetune run` prints the plan (show.py), writes it to RUN_DIR/plan.json and runs it; `budgetune plan --data ...`
prints the same plan and stops. After the run, outcome.py sets the plan beside what the ledger spent.
"""

from __future__ import annotations

from .choices import Choice, JointPlan, given_fields
from .plan import apply, make_plan

__all__ = ["Choice", "JointPlan", "apply", "given_fields", "make_plan"]
