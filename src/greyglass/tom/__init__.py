"""Theory of mind: false-belief stories, whether the model answers for the protagonist's belief or for
reality, where probes read each, and whether steering along the belief direction moves the answers
(docs/tom.md)."""
