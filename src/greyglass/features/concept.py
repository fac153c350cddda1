"""Concepts across languages: which latents fire on a concept in every language, and not on controls.

A concept is a set of short sentences per language (the built-in set in `data/concepts.json`
or a JSON file the user writes in the same shape) plus control sentences per language on
unrelated topics; real news sentences from the bundled NTREX-128 (line-aligned translations)
are added as further controls. For each sentence we take each latent's maximum activation
over its tokens. Per language, a latent "carries" the concept when its mean activation on the
concept's sentences is above its largest activation on any control sentence of that language.
Latents are ranked by how many languages they carry the concept in (language independence),
then by their mean margin over the controls; each ranked latent also gets the AUROC of its
activation for concept vs control sentences, averaged over languages (0.5 = no separation).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import torch

from ..data.files import bundled_path, open_text
from ..errors import GreyglassError
from ..models import LoadedModel
from ..stats import auroc
from .load import SAELike
from .source import text_latents

NTREX_FILES = {"en": "newstest2019-src.eng.txt", "fr": "newstest2019-ref.fra.txt", "de": "newstest2019-ref.deu.txt",
               "es": "newstest2019-ref.spa.txt", "it": "newstest2019-ref.ita.txt", "pt": "newstest2019-ref.por.txt",
               "ru": "newstest2019-ref.rus.txt", "zh": "newstest2019-ref.zho-CN.txt", "ja": "newstest2019-ref.jpn.txt",
               "ko": "newstest2019-ref.kor.txt", "ar": "newstest2019-ref.arb.txt", "hi": "newstest2019-ref.hin.txt"}


@dataclass(frozen=True)
class Concept:
    """Sentences expressing one concept, and control sentences, per language."""

    name: str
    description: str
    target_words: tuple[str, ...]
    sentences: dict[str, list[str]]
    controls: dict[str, list[str]]


def _builtin_data() -> dict[str, Any]:
    return json.loads(files("greyglass.features").joinpath("data/concepts.json").read_text(encoding="utf-8"))


def builtin_concepts() -> dict[str, Concept]:
    data = _builtin_data()
    return {name: Concept(name, c["description"], tuple(c["target_words"]), c["sentences"], data["controls"])
            for name, c in data["concepts"].items()}


def load_concept(spec: str) -> Concept:
    """A built-in concept by name, or a JSON file {name, description?, target_words?, sentences, controls?}."""
    builtin = builtin_concepts()
    if spec in builtin:
        return builtin[spec]
    path = Path(spec)
    if not path.is_file():
        raise GreyglassError(f"concept {spec!r} is neither built in ({', '.join(builtin)}) nor a file")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise GreyglassError(f"{path}: not valid JSON (line {e.lineno}: {e.msg})") from None
    for key in ("sentences", "controls"):
        value = raw.get(key, {}) if key == "controls" else raw.get(key)
        if not isinstance(value, dict) or not all(
                isinstance(v, list) and v and all(isinstance(s, str) and s.strip() for s in v) for v in value.values()):
            raise GreyglassError(f"{path}: field {key!r} must map each language code to a non-empty list of sentences")
    if not raw["sentences"]:
        raise GreyglassError(f"{path}: field 'sentences' has no languages")
    controls = raw.get("controls") or _builtin_data()["controls"]
    return Concept(str(raw.get("name", path.stem)), str(raw.get("description", "")),
                   tuple(raw.get("target_words", ())), raw["sentences"], controls)


def ntrex_sentences(lang: str, n: int, start: int = 0) -> list[str]:
    """Lines `start..start+n` of NTREX-128 in `lang` (the same sentences in every language)."""
    if lang not in NTREX_FILES or n <= 0:
        return []
    with open_text(bundled_path(f"ntrex-128/{NTREX_FILES[lang]}")) as f:
        lines = [line.strip() for _, line in zip(range(start + n), f)]
    return lines[start:]


def concept_table(lm: LoadedModel, sae: SAELike, concept: Concept, ntrex: int = 10, top: int = 10) -> dict[str, Any]:
    """Languages x latents activations and the latents ranked by language independence."""
    langs = list(concept.sentences)
    per_lang: list[tuple[torch.Tensor, torch.Tensor]] = []  # ([n_sentences, d_sae], [n_controls, d_sae])
    for lang in langs:
        controls = concept.controls.get(lang, []) + ntrex_sentences(lang, ntrex)
        if not controls:
            raise GreyglassError(f"concept {concept.name!r}: no control sentences for language {lang!r}; "
                                 "add them under 'controls'")
        per_lang.append((text_latents(lm, sae, concept.sentences[lang]), text_latents(lm, sae, controls)))
    concept_mean = [on.mean(0) for on, _ in per_lang]
    control_max = [ctrl.max(0).values for _, ctrl in per_lang]
    control_mean = [ctrl.mean(0) for _, ctrl in per_lang]
    on, ctrl_max, ctrl_mean = torch.stack(concept_mean), torch.stack(control_max), torch.stack(control_mean)  # [L, d_sae]
    carries = on > ctrl_max  # [L, d_sae]
    margin = (on - ctrl_mean).mean(0)  # [d_sae]
    n_langs = carries.sum(0)
    order = sorted(range(on.shape[1]), key=lambda j: (-int(n_langs[j]), -float(margin[j])))[:top]
    ranked = [{"latent": j, "languages": int(n_langs[j]), "fraction_of_languages": float(n_langs[j]) / len(langs),
               "carries": [lang for lang, c in zip(langs, carries[:, j].tolist()) if c],
               "mean_margin": float(margin[j]),
               "mean_auroc": sum(_auroc(on[:, j], ctrl[:, j]) for on, ctrl in per_lang) / len(langs),
               "concept_mean": dict(zip(langs, (round(v, 4) for v in on[:, j].tolist()))),
               "control_max": dict(zip(langs, (round(v, 4) for v in ctrl_max[:, j].tolist())))}
              for j in order]
    return {"concept": concept.name, "description": concept.description, "languages": langs,
            "n_sentences": {lang: len(s) for lang, s in concept.sentences.items()}, "ntrex_controls": ntrex,
            "ranked": ranked}


def _auroc(concept: torch.Tensor, controls: torch.Tensor) -> float:
    """How well this latent's activation separates a language's concept sentences from its controls."""
    scores = torch.cat([concept, controls]).tolist()
    return auroc(scores, [1] * len(concept) + [0] * len(controls))


def format_table(result: dict[str, Any], links: dict[int, str] | None = None) -> str:
    """The languages x latents table as text, ranked latents as columns."""
    ranked, langs = result["ranked"], result["languages"]
    head = "lang  " + "".join(f"{r['latent']:>9}" for r in ranked)
    rows = [f"{lang:<6}" + "".join(f"{r['concept_mean'][lang]:>8.2f}{'*' if lang in r['carries'] else ' '}"
                                   for r in ranked) for lang in langs]
    foot = "langs " + "".join(f"{r['languages']}/{len(langs)}".rjust(8) + " " for r in ranked)
    lines = [f"concept {result['concept']!r} ({result['description']}): mean max-activation per language; "
             "* = above every control sentence in that language", head, *rows, foot]
    for r in ranked[:5]:
        link = f"  {links[r['latent']]}" if links and r["latent"] in links else ""
        lines.append(f"latent {r['latent']}: {r['languages']}/{len(langs)} languages, margin {r['mean_margin']:.3g}, "
                     f"AUROC vs controls {r['mean_auroc']:.2f} (mean over languages){link}")
    return "\n".join(lines)
