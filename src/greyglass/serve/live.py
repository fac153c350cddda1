"""The model-backed parts of the browser: latents and probes per token, and steered generation.

The model is loaded lazily, once per spec, on first use; SAEs and directions are cached by
folder. One lock serialises model work, because hooks are global to the model: two requests
steering at once would add each other's vectors. Generation is bounded by `MAX_NEW_TOKENS`
and by `MAX_SECONDS` of wall-clock time per generation.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import torch

from ..directions import Direction
from ..errors import GreyglassError
from ..latents.intervene import SteerMode, latent_steering
from ..latents.source import sequence_latents
from ..models.generate import reply
from ..models.hooks import run_to_sites
from ..models.lm import LoadedModel
from ..models.loader import DEFAULT_MODEL, load_model
from ..sae.io import load_sae
from ..sae.model import SparseAutoencoder
from ..steer.apply import steering as steer_direction

MAX_TEXT_CHARS = 2000
MAX_NEW_TOKENS = 64
MAX_SECONDS = 20.0
MAX_COEF = 1000.0


class TokenLatents(NamedTuple):
    tokens: list[str]
    top: list[list[tuple[int, float]]]
    """Per token, its most active latents (latent, activation), strongest first."""


class ProbeScores(NamedTuple):
    name: str
    site: str
    kind: str
    scores: list[float]  # one per token


class LiveModel:
    """A lazily loaded model plus cached SAEs and directions."""

    def __init__(self, model_spec: str | None = None, load: Callable[[str], LoadedModel] = load_model):
        self.model_spec = model_spec
        self._load = load
        self._models: dict[str, LoadedModel] = {}
        self._saes: dict[str, SparseAutoencoder] = {}
        self._directions: dict[Path, Direction] = {}
        self.lock = threading.Lock()

    def model(self, spec: str | None = None) -> LoadedModel:
        """The `--model` given to `serve`, else the run's own model spec, else the embedded default."""
        spec = self.model_spec or spec or DEFAULT_MODEL
        if spec not in self._models:
            self._models[spec] = self._load(spec)
        return self._models[spec]

    def sae(self, folder: str) -> SparseAutoencoder:
        if folder not in self._saes:
            self._saes[folder] = load_sae(folder)
        return self._saes[folder]

    def direction(self, folder: Path) -> Direction:
        if folder not in self._directions:
            self._directions[folder] = Direction.load(folder)
        return self._directions[folder]

    def token_latents(self, lm: LoadedModel, sae: SparseAutoencoder, text: str, k: int = 5) -> TokenLatents:
        """Which latents fire on each token of `text` (BOS dropped), the top `k` of each; none on the
        first token of a model without BOS, the attention sink the SAE was not trained on."""
        sae.check_site(lm.d_model, lm.name)
        ids = self._ids(lm, text)
        lat = sequence_latents(lm, sae, [ids.tolist()])[0][0]  # [T, d_sae], zero at the sink, as in text -> latents
        if lm.prepend_bos and len(ids) > 1:
            ids, lat = ids[1:], lat[1:]
        vals, idx = lat.topk(min(k, lat.shape[1]), dim=1)
        top = [[(j, v) for j, v in zip(js, vs) if v > 0] for js, vs in zip(idx.tolist(), vals.tolist())]
        return TokenLatents(self._strings(lm, ids), top)

    def probe_scores(self, lm: LoadedModel, text: str, directions: dict[str, Path]) -> tuple[list[str], list[ProbeScores], list[str]]:
        """Each saved direction's score on each token; directions made for another model are listed as skipped."""
        loaded, skipped = [], []
        for name, folder in directions.items():
            try:
                d = self.direction(folder)
                d.check_model(lm.d_model)
                lm.site(d.site)
            except GreyglassError as e:
                skipped.append(f"{name}: {e}")
                continue
            loaded.append((name, d))
        if not loaded:
            return self._strings(lm, self._ids(lm, text)), [], skipped
        sites = [site.name for site in sorted({lm.site(d.site) for _, d in loaded})]
        ids = self._ids(lm, text)
        acts = run_to_sites(lm, ids[None].to(lm.device), sites)
        keep = slice(1, None) if lm.prepend_bos and len(ids) > 1 else slice(None)
        scores = [ProbeScores(name, d.site, d.kind, d.score(acts[lm.site(d.site).name][0, keep].float().cpu()).tolist())
                  for name, d in loaded]
        return self._strings(lm, ids[keep]), scores, skipped

    def steer(self, lm: LoadedModel, prompt: str, max_new_tokens: int,
              apply: Callable[[], Any]) -> tuple[str, str]:
        """(baseline, steered) greedy generations; `apply()` returns the context manager that steers."""
        baseline = reply(lm, prompt, max_new_tokens, max_time=MAX_SECONDS)
        with apply():
            steered = reply(lm, prompt, max_new_tokens, max_time=MAX_SECONDS)
        return baseline, steered

    @staticmethod
    def by_direction(lm: LoadedModel, d: Direction, coef: float) -> Callable[[], Any]:
        """Steering as `greyglass steer` does it: coef in units of the site's typical residual norm."""
        d.check_model(lm.d_model)
        return lambda: steer_direction(lm, d, coef)

    @staticmethod
    def by_latent(lm: LoadedModel, sae: SparseAutoencoder, latent: int, coef: float, mode: SteerMode = "add") -> Callable[[], Any]:
        sae.check_site(lm.d_model, lm.name)
        if not 0 <= latent < sae.cfg.d_sae:
            raise GreyglassError(f"latent {latent} is out of range; this SAE has latents 0 to {sae.cfg.d_sae - 1}")
        return lambda: latent_steering(lm, sae, latent, coef, mode=mode)

    @staticmethod
    def _ids(lm: LoadedModel, text: str) -> torch.Tensor:
        ids = lm.tokenizer(text).input_ids
        if not ids:
            raise GreyglassError("the text has no tokens; type some text")
        if lm.context is not None and len(ids) > lm.context:  # past it, learned positions fail (IndexError)
            raise GreyglassError(f"the text is {len(ids):,} tokens, over the model's context of {lm.context:,}; "
                                 "shorten it")
        return torch.tensor(ids)

    @staticmethod
    def _strings(lm: LoadedModel, ids: torch.Tensor) -> list[str]:
        return [lm.tokenizer.decode([i]) for i in ids.tolist()]


def check_text(text: str, field: str = "text") -> str:
    if not text.strip():
        raise GreyglassError(f"{field} is empty; type some text")
    if len(text) > MAX_TEXT_CHARS:
        raise GreyglassError(f"{field} is {len(text):,} characters; the limit is {MAX_TEXT_CHARS:,}")
    return text
