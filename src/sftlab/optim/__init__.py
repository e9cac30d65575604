"""Optimizers and learning-rate schedules, picked by name from small registries."""
