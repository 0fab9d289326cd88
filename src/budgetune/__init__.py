"""budgetune: plan and run LLM fine-tuning under explicit memory, data and compute budgets."""

__version__ = "0.1.0"
