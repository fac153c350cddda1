"""Behavioural alignment evals: items, prompt formats, scoring backends, the evals and their run folders."""
