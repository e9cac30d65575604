"""Hyperparameter search on Optuna: the space (`space`), the study (`study`), one trial as a process
(`trial`) and the results (`results`). The recipe that wires them is `sftlab.recipes.search`."""
