"""Natural-language explanations of latents from any OpenAI-compatible server, with a detection score.

The explainer sees a latent's top contexts (the activating token marked `<<like this>>`) and
writes a one-sentence explanation. The detection score checks it on text it did not see: the
latent's random active samples (positives) mixed with other latents' samples (negatives, which
fire this latent rarely at typical densities); the same server, given only the explanation,
picks which snippets it fires on. Score = balanced accuracy (0.5 = chance, 1 = perfect).
Requests go through `greyglass.http_client.JsonClient` (API key, timeout, retries).
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

from ..errors import GreyglassError
from ..http_client import JsonClient
from .config import Explanation
from .db import FeatureDB, set_explanation


class ExplainerClient:
    """One user message in, the reply's text out, through `/chat/completions` of a `JsonClient`'s server."""

    def __init__(self, http: JsonClient, model: str = "default"):
        self.http, self.model = http, model

    def chat(self, prompt: str, max_tokens: int = 200) -> str:
        reply = self.http.post("chat/completions", {"model": self.model, "temperature": 0, "max_tokens": max_tokens,
                                                    "messages": [{"role": "user", "content": prompt}]})
        try:
            content = reply["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            content = None
        if not isinstance(content, str):
            raise GreyglassError(f"explainer {self.http.base_url}/chat/completions answered, but without the text "
                                 "at choices[0].message.content; it must be an OpenAI-compatible chat server")
        return content


def _snippet(ctx: dict[str, Any], mark: bool) -> str:
    return "".join(f"<<{t}>>" if mark and i == ctx["centre_index"] else t
                   for i, (t, _) in enumerate(ctx["tokens"])).replace("\n", " ")


def explain(client: ExplainerClient, row: dict[str, Any]) -> str:
    examples = "\n".join(f"- {_snippet(c, True)}" for c in row["top"][:10])
    prompt = ("Here are text snippets where one feature of a language model fires most strongly; the token where it "
              f"fires is marked <<like this>>.\n{examples}\n"
              "In one short sentence, what does this feature detect? Answer with the sentence only.")
    return client.chat(prompt, max_tokens=60).strip().split("\n")[0]


def detection_score(client: ExplainerClient, explanation: str, positives: list[str], negatives: list[str],
                    seed: int = 0) -> float:
    """Balanced accuracy of the server predicting, from the explanation alone, which snippets fire."""
    items = [(s, 1) for s in positives] + [(s, 0) for s in negatives]
    random.Random(seed).shuffle(items)
    listing = "\n".join(f"{i + 1}. {s}" for i, (s, _) in enumerate(items))
    prompt = (f"A feature of a language model detects: {explanation}\nWhich of these snippets contain text it fires "
              f"on?\n{listing}\nAnswer with the numbers only, comma-separated (or 'none').")
    picked = {int(n) - 1 for n in re.findall(r"\d+", client.chat(prompt, max_tokens=100))}
    tpr = sum(1 for i, (_, y) in enumerate(items) if y and i in picked) / max(len(positives), 1)
    tnr = sum(1 for i, (_, y) in enumerate(items) if not y and i not in picked) / max(len(negatives), 1)
    return (tpr + tnr) / 2


def explain_latents(db: FeatureDB, db_path: str | Path, client: ExplainerClient, n: int, n_test: int = 5,
                    seed: int = 0) -> tuple[Explanation, ...]:
    """Explain and score the `n` most frequent live latents; store both in the database."""
    live = sorted((r for r in db.latent_rows() if r["density"] > 0), key=lambda r: -r["density"])
    rng = random.Random(seed)
    out = []
    for r in live[:n]:
        row = db.latent(r["latent"])
        explanation = explain(client, row)
        positives = [_snippet(c, False) for c in row["quantile"][:n_test]]
        others = [db.latent(o["latent"])["quantile"] for o in rng.sample(live, min(len(live), n_test + 1))
                  if o["latent"] != r["latent"]]
        negatives = [_snippet(q[0], False) for q in others[:n_test] if q]
        score = detection_score(client, explanation, positives, negatives, seed) if positives and negatives else None
        set_explanation(db_path, r["latent"], explanation, score)
        out.append(Explanation(r["latent"], explanation, score))
    return tuple(out)
