"""Automated red teaming with a red language model (Perez et al. 2022): test cases, answers and verdicts
(docs/redteam.md)."""
