"""Concepts across languages: which latents fire on a concept in every language, and not on controls.

A concept is a set of short sentences per language (the built-in set in `data/concepts.json`
or a JSON file the user writes in the same shape) plus control sentences per language on
unrelated topics; real news sentences from the bundled NTREX-128 (line-aligned translations)
are added as further controls. For each sentence we take each latent's maximum activation
over its tokens. Per language, a latent "carries" the concept when its mean activation on the
concept's sentences is above its largest activation on any control sentence of that language.
Latents are ranked by how many languages they carry the concept in (language independence),
then by their mean margin over the controls.

Ranking picks the latents that look best on the sentences it sees, so scoring them on those
same sentences flatters them. The sentences are therefore split by id (`is_heldout`): the
even-numbered concept sentences, controls and NTREX lines rank the latents, the odd-numbered
ones score them. A sentence's translations share its id, so no held-out sentence has a
translation among the ranking ones. Each ranked latent gets the AUROC of its activation for
held-out concept vs control sentences, averaged over languages (0.5 = no separation), with a
95% interval from a cluster bootstrap (a sentence and its translations are one cluster).

`run_concept` is `greyglass features concept`: the table, and dashboards of the ranked latents
where the SAE's feature database exists, in a run folder.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from ..data.ntrex import ntrex_sentences
from ..errors import GreyglassError
from ..json_files import read_json_object
from ..models.lm import LoadedModel
from ..runs import write_config, write_results
from ..stats import Estimate, auroc, bootstrap
from .config import ConceptConfig, ConceptResults, HeldoutCounts, RankedLatent
from .db import FeatureDB, features_dir
from ..sae.io import load_sae
from ..sae.model import SparseAutoencoder
from .source import text_latents

MIN_HELDOUT_CONCEPT = 3
"""Held-out concept sentences (translations counted once) needed for an interval on the held-out AUROC."""


@dataclass(frozen=True)
class Concept:
    """Sentences expressing one concept, and control sentences, per language."""

    name: str
    description: str
    target_words: tuple[str, ...]
    sentences: dict[str, list[str]]
    controls: dict[str, list[str]]


def _builtin_data() -> dict[str, Any]:
    return json.loads(files("greyglass.latents").joinpath("data/concepts.json").read_text(encoding="utf-8"))


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
    raw = read_json_object(path)
    words = raw.get("target_words", [])
    if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
        raise GreyglassError(f"{path}: field 'target_words' must be a list of words")
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


def is_heldout(sentence_id: int) -> bool:
    """Odd-numbered sentences score the latents; even-numbered ones rank them. By id, so the
    translations of one sentence (the same index in every language) stay on one side."""
    return sentence_id % 2 == 1


class Sentences(NamedTuple):
    """One language's sentences, each with its id (shared by its translations) and label."""

    texts: list[str]
    ids: list[int]  # the sentence's index in its list (concept sentences, controls, NTREX lines)
    keys: list[str]  # "concept:3", "control:1", "ntrex:57": one cluster per sentence and its translations
    labels: list[int]  # 1 = concept, 0 = control

    def side(self, heldout: bool) -> list[int]:
        """Row indices on the ranking side (False) or the held-out side (True)."""
        return [row for row, i in enumerate(self.ids) if is_heldout(i) == heldout]


def language_sentences(concept: Concept, lang: str, ntrex: int) -> Sentences:
    """A language's concept sentences, its controls and `2 * ntrex` NTREX lines (half per side)."""
    parts = [("concept", concept.sentences[lang], 1), ("control", concept.controls.get(lang, []), 0),
             ("ntrex", ntrex_sentences(lang, 2 * ntrex), 0)]
    rows = [(text, i, f"{kind}:{i}", label) for kind, texts, label in parts for i, text in enumerate(texts)]
    sentences = Sentences(*(list(column) for column in zip(*rows)))
    for heldout in (False, True):
        labels = {sentences.labels[i] for i in sentences.side(heldout)}
        if labels != {0, 1}:
            side = "held-out (odd-numbered)" if heldout else "ranking (even-numbered)"
            raise GreyglassError(f"concept {concept.name!r}, language {lang!r}: no {side} "
                                 f"{'control' if 1 in labels else 'concept'} sentences; give at least two concept "
                                 "sentences and two controls per language (or --ntrex > 0 for a language "
                                 "NTREX-128 has)")
    return sentences


def concept_table(lm: LoadedModel, sae: SparseAutoencoder, concept: Concept, ntrex: int = 50, top: int = 10) -> ConceptResults:
    """Languages x latents activations, latents ranked by language independence on the ranking
    sentences, and each ranked latent's AUROC on the held-out sentences with a 95% interval."""
    langs = list(concept.sentences)
    sentences = [language_sentences(concept, lang, ntrex) for lang in langs]
    latents = [text_latents(lm, sae, s.texts) for s in sentences]  # per language [n_sentences, d_sae]
    ranking = [_split(s, lat, heldout=False) for s, lat in zip(sentences, latents)]
    on, ctrl_max, ctrl_mean = (torch.stack(x) for x in zip(*map(_concept_vs_controls, ranking)))  # [L, d_sae] each
    carries = on > ctrl_max  # [L, d_sae]
    margin = (on - ctrl_mean).mean(0)  # [d_sae]
    n_langs = carries.sum(0)
    order = sorted(range(on.shape[1]), key=lambda j: (-int(n_langs[j]), -float(margin[j])))[:top]
    heldout = [_split(s, lat, heldout=True) for s, lat in zip(sentences, latents)]
    ranked = tuple(RankedLatent(
        latent=j, languages=int(n_langs[j]), fraction_of_languages=float(n_langs[j]) / len(langs),
        carries=tuple(lang for lang, c in zip(langs, carries[:, j].tolist()) if c), mean_margin=float(margin[j]),
        heldout_auroc=_heldout_auroc(heldout, j),
        ranking_auroc=_mean_auroc(*_pooled(ranking, j)[:3]),  # in-sample, for contrast
        concept_mean=dict(zip(langs, (round(v, 4) for v in on[:, j].tolist()))),
        control_max=dict(zip(langs, (round(v, 4) for v in ctrl_max[:, j].tolist()))))
        for j in order)
    held_keys = {s.keys[i] for s in sentences for i in s.side(True)}
    return ConceptResults(
        concept=concept.name, description=concept.description, languages=tuple(langs),
        n_sentences={lang: len(s) for lang, s in concept.sentences.items()}, ntrex_controls=ntrex,
        heldout=HeldoutCounts(concept_sentences=sum(k.startswith("concept:") for k in held_keys),
                              control_sentences=sum(not k.startswith("concept:") for k in held_keys)),
        ranked=ranked)


def run_concept(lm: LoadedModel, cfg: ConceptConfig, out: str | Path) -> ConceptResults:
    """`greyglass features concept`: the ranked latents, with dashboards where the SAE's feature database exists."""
    concept = load_concept(cfg.concept)
    sae = load_sae(cfg.sae)
    write_config(out, "features_concept", model=lm.provenance(), config=cfg, concept_sentences=concept)
    results = concept_table(lm, sae, concept, ntrex=cfg.ntrex, top=cfg.top)
    try:
        db = FeatureDB(features_dir(cfg.features or cfg.sae))
    except GreyglassError:  # no database yet: the section says how to get dashboards
        pass
    else:
        from .dashboard import write_html

        write_html(db, Path(out) / "dashboards", [r.latent for r in results.ranked])
        results = dataclasses.replace(results, dashboards="dashboards/index.html", ranked=tuple(
            dataclasses.replace(r, dashboard=f"dashboards/latent_{r.latent}.html") for r in results.ranked))
    write_results(out, results)
    return results


def _split(sentences: Sentences, latents: torch.Tensor, heldout: bool) -> tuple[torch.Tensor, list[int], list[str]]:
    """(latents, labels, cluster keys) of one side of a language's sentences."""
    rows = sentences.side(heldout)
    return latents[rows], [sentences.labels[i] for i in rows], [sentences.keys[i] for i in rows]


def _concept_vs_controls(side: tuple[torch.Tensor, list[int], list[str]]) -> tuple[torch.Tensor, ...]:
    """A language's mean latents on its concept sentences, and its maximum and mean on its controls."""
    latents, labels, _ = side
    is_concept = torch.tensor(labels) == 1
    return latents[is_concept].mean(0), latents[~is_concept].max(0).values, latents[~is_concept].mean(0)


def _pooled(per_lang: list[tuple[torch.Tensor, list[int], list[str]]], latent: int) -> tuple[np.ndarray, ...]:
    """One latent's scores, labels, language index and cluster key over every language's rows."""
    scores = np.concatenate([lat[:, latent].numpy() for lat, _, _ in per_lang])
    labels = np.concatenate([labels for _, labels, _ in per_lang])
    lang = np.concatenate([[i] * len(labels) for i, (_, labels, _) in enumerate(per_lang)])
    keys = np.concatenate([keys for _, _, keys in per_lang])
    return scores, labels, lang, keys


def _mean_auroc(scores: np.ndarray, labels: np.ndarray, lang: np.ndarray) -> float:
    """The AUROC of concept vs control sentences within each language, averaged over languages
    (those without both kinds in a bootstrap resample are skipped)."""
    values = [auroc(scores[lang == i], labels[lang == i]) for i in np.unique(lang)]
    values = [v for v in values if np.isfinite(v)]
    return float(np.mean(values)) if values else float("nan")


def _heldout_auroc(heldout: list[tuple[torch.Tensor, list[int], list[str]]], latent: int) -> Estimate:
    """Held-out AUROC with a cluster-bootstrap interval: a sentence and its translations are one
    cluster. With fewer than `MIN_HELDOUT_CONCEPT` held-out concept sentences the resamples
    barely vary the positives and the interval would look far surer than it is: none is given."""
    scores, labels, lang, keys = _pooled(heldout, latent)
    if len(set(keys[labels == 1])) < MIN_HELDOUT_CONCEPT:
        return Estimate(_mean_auroc(scores, labels, lang), float("nan"), float("nan"))
    return bootstrap(_mean_auroc, scores, labels, lang, groups=keys)
