"""Metrics and the printed evaluation report."""
