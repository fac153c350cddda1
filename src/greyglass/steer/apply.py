"""Applying a steering vector: add `coef * vector` to the residual stream while generating or scoring.

`steering(lm, direction, coef, sites)` is a context manager (built on `greyglass.models.adding`)
that adds the vector at one or more sites at every position, for generation and for scoring
alike. `generate` decodes greedily so baseline and steered runs differ only by the vector.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from textwrap import wrap
from typing import NamedTuple


from ..directions import Direction
from ..models import LoadedModel, adding
from ..models.generate import reply


@contextmanager
def steering(lm: LoadedModel, direction: Direction, coef: float, sites: Sequence[str] | None = None) -> Iterator[None]:
    """Add `coef * direction.model_space()` at each of `sites` (default: the direction's own site)."""
    direction.check_model(lm.d_model)
    vector = direction.model_space()
    with ExitStack() as stack:
        for site in sites or [direction.site]:
            stack.enter_context(adding(lm, site, vector, coef))
        yield


class Comparison(NamedTuple):
    prompt: str
    baseline: str
    steered: str


def compare(lm: LoadedModel, direction: Direction, coef: float, prompts: Sequence[str],
            sites: Sequence[str] | None = None, max_new_tokens: int = 40) -> list[Comparison]:
    """Baseline and steered greedy generations for each prompt."""
    rows = []
    for prompt in prompts:
        baseline = reply(lm, prompt, max_new_tokens)
        with steering(lm, direction, coef, sites):
            steered = reply(lm, prompt, max_new_tokens)
        rows.append(Comparison(prompt, baseline, steered))
    return rows


def side_by_side(rows: Sequence[Comparison], coef: float, width: int = 48) -> str:
    """Two text columns per prompt: baseline | steered."""
    lines = []
    for row in rows:
        lines += [f"prompt: {row.prompt}", f"{'baseline':<{width}} | steered (coef {coef:g})", "-" * (2 * width + 3)]
        left, right = wrap(row.baseline, width) or [""], wrap(row.steered, width) or [""]
        for i in range(max(len(left), len(right))):
            a = left[i] if i < len(left) else ""
            b = right[i] if i < len(right) else ""
            lines.append(f"{a:<{width}} | {b}")
        lines.append("")
    return "\n".join(lines)
