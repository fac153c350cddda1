"""Which documents an SAE was trained on, and the check that its evaluation text is not among them.

A corpus's `heldout` split (every 20th document by index, `data.corpus`) shares no document with
its `train` split, whatever the seed, window size or BOS setting. So evaluation text is provably
held out when the SAE trained on the `train` split of the same documents (same corpus bytes and
text field: `documents_fingerprint`) and the evaluation reads that corpus's `heldout` split.
Training records `training_text` in the SAE folder's `training.json` (under "provenance");
`heldout_status` compares it with the evaluation corpus. Anything else (an SAE trained on split
`all`, another corpus, a SAELens SAE with no record) cannot be shown to be held out: it is an
error, or with `allow_unverified` a result labelled as not verified.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

from ..data.corpus import DEFAULT_CORPUS, CorpusConfig, corpus_fingerprint, documents_fingerprint
from ..errors import GreyglassError
from .results import HeldOut

TRAINING_TEXT = "training_text"
"""The key of the record in an SAE's training provenance."""
UNVERIFIED_FLAG = "--unverified-text"


def training_text(corpus: CorpusConfig) -> dict[str, Any]:
    """The record of training on `corpus` (on the fly)."""
    return {"corpus": corpus.corpus or DEFAULT_CORPUS, "text_field": corpus.text_field, "split": corpus.split,
            "documents": documents_fingerprint(corpus)}


def store_training_text(manifest: dict[str, Any]) -> dict[str, Any]:
    """The record of training on a store: its corpus and split from the manifest. Stores captured before
    the manifest held the documents' fingerprint get it recomputed, but only when the corpus files are
    provably the ones captured (the store's full corpus fingerprint still matches); otherwise it is None."""
    recorded = manifest["corpus"]
    documents = recorded.get("documents") or _recomputed_documents(recorded)
    return {"corpus": recorded["corpus"] or DEFAULT_CORPUS, "text_field": recorded.get("text_field", "text"),
            "split": recorded["split"], "documents": documents}


def _recomputed_documents(recorded: dict[str, Any]) -> str | None:
    cfg = CorpusConfig(**{f.name: recorded[f.name] for f in fields(CorpusConfig) if f.name in recorded})
    try:
        return documents_fingerprint(cfg) if corpus_fingerprint(cfg) == recorded.get("fingerprint") else None
    except GreyglassError:  # the corpus files are gone
        return None


def heldout_status(trained_on: dict[str, Any] | None, corpus: CorpusConfig, sae: str | Path,
                   allow_unverified: bool = False) -> HeldOut:
    """Verified when `corpus` is provably disjoint from the SAE's training documents; otherwise a
    GreyglassError saying why and what to do, or with `allow_unverified` not verified, with the reason."""
    try:
        return _verified(trained_on, corpus, sae)
    except GreyglassError as e:
        if not allow_unverified:
            raise
        return HeldOut(verified=False, reason=str(e).split("; ")[0])


def _verified(trained_on: dict[str, Any] | None, corpus: CorpusConfig, sae: str | Path) -> HeldOut:
    anyway = f"or pass {UNVERIFIED_FLAG} to evaluate anyway (the results then say the text is not shown to be held out)"
    if not trained_on:
        raise GreyglassError(f"{sae} does not record the text it was trained on (a SAELens SAE, or trained before "
                             "greyglass recorded it), so no evaluation text can be shown to be held out; retrain it "
                             f"with `greyglass sae train`, {anyway}")
    name = corpus.corpus or DEFAULT_CORPUS
    if corpus.split != "heldout":
        raise GreyglassError(f"evaluation reads split {corpus.split!r}, not 'heldout'; {anyway}")
    if trained_on["split"] != "train":
        raise GreyglassError(f"{sae} was trained on split {trained_on['split']!r} of {trained_on['corpus']}, which "
                             "includes its held-out documents; train on a store captured with --split train (the "
                             f"default of `greyglass capture`) or on the fly, {anyway}")
    if trained_on.get("documents") is None:
        raise GreyglassError(f"the corpus {trained_on['corpus']} of the store {sae} was trained from has changed or "
                             "moved since the capture, so its held-out documents cannot be identified; recapture "
                             f"and retrain, {anyway}")
    if trained_on["documents"] != documents_fingerprint(corpus):
        raise GreyglassError(f"{sae} was trained on {trained_on['corpus']} but the evaluation reads {name}: another "
                             "corpus (or text field) cannot be shown to share no document with the training text; "
                             f"evaluate on the training corpus (--corpus {trained_on['corpus']}), {anyway}")
    return HeldOut(verified=True, corpus=name, basis="the heldout split (every 20th document) of the corpus whose "
                   "train split the SAE was trained on")
