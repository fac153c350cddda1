"""NTREX-128 (bundled: `datasets/ntrex-128`): the same 1,997 news sentences in many languages, line-aligned.

Concepts across languages (`latents.concept`) and sparse probing's language task (`sae.sparse_probing`) read it.
"""

from __future__ import annotations

from .files import bundled_path, open_text

NTREX_FILES = {"en": "newstest2019-src.eng.txt", "fr": "newstest2019-ref.fra.txt", "de": "newstest2019-ref.deu.txt",
               "es": "newstest2019-ref.spa.txt", "it": "newstest2019-ref.ita.txt", "pt": "newstest2019-ref.por.txt",
               "ru": "newstest2019-ref.rus.txt", "zh": "newstest2019-ref.zho-CN.txt", "ja": "newstest2019-ref.jpn.txt",
               "ko": "newstest2019-ref.kor.txt", "ar": "newstest2019-ref.arb.txt", "hi": "newstest2019-ref.hin.txt"}


def ntrex_sentences(lang: str, n: int, start: int = 0) -> list[str]:
    """Lines `start..start+n` of NTREX-128 in `lang` (the same sentences in every language)."""
    if lang not in NTREX_FILES or n <= 0:
        return []
    with open_text(bundled_path(f"ntrex-128/{NTREX_FILES[lang]}")) as f:
        lines = [line.strip() for _, line in zip(range(start + n), f)]
    return lines[start:]
