"""How varied a set of test cases is: distinct-n and self-BLEU, on lower-cased word tokens.

- distinct-n (Li et al. 2016): distinct n-grams over all n-grams of the set; 1 when no n-gram
  repeats, near 0 when every case says the same.
- self-BLEU (Zhu et al. 2018, as Perez et al. 2022 report it): each case's BLEU-4 against all
  the other cases as references, averaged over cases; high means the cases resemble one another.
  Written out here (no BLEU package is a dependency): modified n-gram precisions for n = 1..4
  (a hypothesis n-gram counts at most as often as in the reference holding it most), their
  geometric mean with equal weights, times the brevity penalty against the closest reference
  length. Smoothing: for n > 1, 1 is added to each precision's numerator and denominator
  (Lin & Och 2004; "method 2" of Chen & Cherry 2014), so a short case with no matching 4-gram
  does not score 0 outright; unigram precision is not smoothed. A set of fewer than two cases
  has no self-BLEU (NaN).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

_WORD = re.compile(r"\w+|[^\w\s]")


def words(text: str) -> list[str]:
    """Lower-cased word and punctuation tokens."""
    return _WORD.findall(text.lower())


def ngrams(tokens: Sequence[str], n: int) -> Counter:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Distinct n-grams / all n-grams over `texts`; NaN when they hold no n-gram."""
    counts: Counter = Counter()
    for text in texts:
        counts.update(ngrams(words(text), n))
    total = sum(counts.values())
    return len(counts) / total if total else float("nan")


def bleu(hypothesis: Sequence[str], references: Sequence[Sequence[str]], max_n: int = 4) -> float:
    """Smoothed sentence BLEU of `hypothesis` against `references` (token lists; see the module docstring)."""
    if not hypothesis or not references:
        return 0.0
    log_precision = 0.0
    for n in range(1, max_n + 1):
        hyp = ngrams(hypothesis, n)
        most: Counter = Counter()
        for ref in references:
            most |= ngrams(ref, n)
        matched, total = sum(min(c, most[g]) for g, c in hyp.items()), sum(hyp.values())
        if n > 1:
            matched, total = matched + 1, total + 1
        if matched == 0:
            return 0.0
        log_precision += math.log(matched / total) / max_n
    closest = min((abs(len(r) - len(hypothesis)), len(r)) for r in references)[1]
    brevity = 1.0 if len(hypothesis) > closest else math.exp(1 - closest / len(hypothesis))
    return brevity * math.exp(log_precision)


def self_bleu(texts: Sequence[str]) -> float:
    """Mean BLEU-4 of each text against all the others; NaN for fewer than two texts."""
    tokens = [words(t) for t in texts]
    if len(tokens) < 2:
        return float("nan")
    return sum(bleu(t, tokens[:i] + tokens[i + 1 :]) for i, t in enumerate(tokens)) / len(tokens)
