"""A short automatic label for each latent, for searching and skimming before reading contexts.

The label is built from what the latent fires on (the centre tokens of its top contexts) and
what it promotes through the logit lens (`models.lens`).
"""

from __future__ import annotations

from collections import Counter


def auto_label(fires_on: list[str], promoted: list[str], n: int = 3) -> str:
    """'bridge, Bridge -> Gate, span': the commonest top-context tokens, then the top promoted ones."""
    common = [t for t, _ in Counter(s.strip() for s in fires_on if _readable(s)).most_common(n)]
    pushes = [s.strip() for s in promoted if _readable(s)][:n]
    if not fires_on:
        return "(never fired)"
    fired = ", ".join(common) or "(whitespace or partial characters)"
    return fired + (" -> " + ", ".join(pushes) if pushes else "")


def _readable(token: str) -> bool:
    """Skip tokens that are blank, partial UTF-8 (decoded as U+FFFD) or control characters."""
    text = token.strip()
    return bool(text) and "\ufffd" not in text and text.isprintable()
