"""Data quality checks: duplicates, leakage, conflicts, truncation, encoding damage, task-specific problems
and likely wrong labels (see docs/data-quality.md). The recipe is `sftlab.recipes.data_check`."""
