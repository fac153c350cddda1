"""Trends across models: one eval over several models, the metric against the model (docs/evals.md)."""
