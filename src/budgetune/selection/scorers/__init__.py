"""One file per scorer; registered in budgetune.selection.registry."""
