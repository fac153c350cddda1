"""Model diffing: where two models with one tokenizer diverge, and a crosscoder of what differs (docs/diff.md)."""
