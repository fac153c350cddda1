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

Whether two sets differ in self-BLEU is a permutation test (`self_bleu_gap`): the cases are
shuffled between the two sets, keeping their sizes, and the p-value is the share of shuffles
whose gap is at least as large as the observed one. A bootstrap interval would not do: a
resample repeats cases, and a repeated case matches itself, which inflates self-BLEU.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

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


MAX_N = 4


class Counted(NamedTuple):
    """A token list with its n-gram counts for n = 1..MAX_N (counted once, used against every other case)."""

    length: int
    grams: tuple[Counter, ...]


def counted(tokens: Sequence[str]) -> Counted:
    return Counted(len(tokens), tuple(ngrams(tokens, n) for n in range(1, MAX_N + 1)))


def bleu(hypothesis: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Smoothed sentence BLEU-4 of `hypothesis` against `references` (token lists; see the module docstring)."""
    refs = [counted(r) for r in references]
    if not refs:
        return 0.0
    most = [Counter() for _ in range(MAX_N)]
    for ref in refs:
        for n in range(MAX_N):
            most[n] |= ref.grams[n]
    return _bleu(counted(hypothesis), lambda n, gram: most[n][gram], [r.length for r in refs])


def _bleu(hyp: Counted, ref_count, ref_lengths: Sequence[int]) -> float:
    """BLEU-4 of `hyp`, given `ref_count(n, gram)`: the most times any reference holds the (n+1)-gram."""
    if not hyp.length:
        return 0.0
    log_precision = 0.0
    for n in range(MAX_N):
        grams = hyp.grams[n]
        matched, total = sum(min(c, ref_count(n, g)) for g, c in grams.items()), sum(grams.values())
        if n > 0:
            matched, total = matched + 1, total + 1
        if matched == 0:
            return 0.0
        log_precision += math.log(matched / total) / MAX_N
    closest = min((abs(length - hyp.length), length) for length in ref_lengths)[1]
    brevity = 1.0 if hyp.length > closest else math.exp(1 - closest / hyp.length)
    return brevity * math.exp(log_precision)


def self_bleu(texts: Sequence[str]) -> float:
    """Mean BLEU-4 of each text against all the others; NaN for fewer than two texts."""
    return _self_bleu([counted(words(t)) for t in texts])


def _self_bleu(cases: Sequence[Counted]) -> float:
    """Each case against all the others, in time linear in the cases: for every n-gram the set keeps its two
    largest counts and the case holding the largest, so "the most any other case holds" is a lookup."""
    if len(cases) < 2:
        return float("nan")
    top: list[dict[tuple, tuple[int, int, int]]] = [{} for _ in range(MAX_N)]  # gram -> (best, its case, second)
    for i, case in enumerate(cases):
        for n in range(MAX_N):
            for gram, c in case.grams[n].items():
                best, who, second = top[n].get(gram, (0, -1, 0))
                top[n][gram] = (c, i, best) if c > best else (best, who, max(second, c))
    lengths = [c.length for c in cases]
    total = 0.0
    for i, case in enumerate(cases):
        def others(n: int, gram: tuple, i: int = i) -> int:
            best, who, second = top[n][gram]
            return second if who == i else best

        total += _bleu(case, others, lengths[:i] + lengths[i + 1 :])
    return total / len(cases)


class Gap(NamedTuple):
    """Self-BLEU of one set minus another's, and the permutation p-value of a gap at least that large."""

    value: float
    p_value: float


def self_bleu_gap(a: Sequence[str], b: Sequence[str], n: int = 200, seed: int = 0) -> Gap:
    """self_bleu(a) - self_bleu(b), with the share of `n` shuffles of the cases between the sets (sizes kept)
    whose gap is at least as large in size (counting the observed one, so never 0)."""
    cases = [counted(words(t)) for t in [*a, *b]]
    observed = _self_bleu(cases[: len(a)]) - _self_bleu(cases[len(a) :])
    if observed != observed:
        return Gap(float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    wider = 0
    for _ in range(n):
        order = rng.permutation(len(cases))
        gap = _self_bleu([cases[i] for i in order[: len(a)]]) - _self_bleu([cases[i] for i in order[len(a) :]])
        wider += abs(gap) >= abs(observed) - 1e-12
    return Gap(observed, (1 + wider) / (1 + n))
