"""Browser page latency against the 300 ms budget and against rendering without the server.

Prints JSON. Builds a realistic runs folder: a feature database of a 4608-latent SAE on the
default model (SmolLM2-135M-Instruct, random SAE weights, `--tokens` tokens read), a capture
run, an eval run with 2,000 items and a saved probe. Each page is fetched through Starlette's
in-process client (no network); the figure is the median of `--repeats` fetches after one warm-up.
Ratios: each page against the budget (target < 1), and the latent dashboard against calling
`FeatureDB.latent` + `latent_page` directly (the cost of serving it).

    python bench/serve_pages.py [--tokens 5000] [--repeats 10]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from serve_runs import SITE, make_runs  # noqa: E402

from greyglass.data import CorpusConfig  # noqa: E402
from greyglass.latents.build import build_features  # noqa: E402
from greyglass.latents.config import BuildConfig, FeaturesConfig  # noqa: E402
from greyglass.latents.db import FeatureDB  # noqa: E402
from greyglass.latents.dashboard import latent_page  # noqa: E402
from greyglass.activations import model_windows, take_tokens  # noqa: E402
from greyglass.models.loader import load_model  # noqa: E402
from greyglass.runs import write_config, write_results  # noqa: E402
from greyglass.sae.architectures import create_sae  # noqa: E402
from greyglass.sae.config import SAEConfig, TopKConfig  # noqa: E402
from greyglass.sae.io import load_sae, save_sae  # noqa: E402

BUDGET_S = 0.3


def median_seconds(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    from starlette.testclient import TestClient

    from greyglass.serve.app import create_app

    lm = load_model()
    root = make_runs(Path(tempfile.mkdtemp()), lm)
    torch.manual_seed(0)
    sae_dir = save_sae(create_sae(SAEConfig(d_in=lm.d_model, d_sae=4608, arch=TopKConfig(k=32), hook_name=SITE)), root / "sae" / "big")
    feats = sae_dir / "features"
    cfg = FeaturesConfig(tokens=args.tokens)
    write_config(feats, "features", model=lm.provenance(), config=BuildConfig(sae=str(sae_dir), features=cfg))
    batches = take_tokens(model_windows(lm, [SITE], CorpusConfig(), cfg.batch_windows), cfg.tokens)
    write_results(feats, build_features(lm, load_sae(sae_dir), batches, cfg, feats,
                                        {"sae": str(sae_dir), "model": lm.name}, progress=False))
    with open(root / "eval" / "e1" / "items.jsonl", "w") as f:
        for i in range(2000):
            f.write(json.dumps({"id": i, "question": "Which is larger? " * 10, "answer": "A", "correct": i % 3 > 0}) + "\n")
    client = TestClient(create_app(root, load=lambda spec: lm))
    db = FeatureDB(feats)
    j = max(db.latent_rows(), key=lambda r: r["density"])["latent"]
    base = "/features/sae/big/features/"
    pages = {"runs": "/", "run": "/run/sae/big/features", "eval_table": "/eval/eval/e1?page=20", "eval_item": "/item/eval/e1/1500",
             "features_list": "/features", "features_index": base + "index.html", "search_fulltext": base + "index.html?q=the",
             "search_fires_on": base + "index.html?fires_on=the", "latent_dashboard": f"{base}latent_{j}.html",
             "text_latents_and_probes": f"/text?features=sae/big/features&text={'The bridge over the river. ' * 4}"}
    seconds = {}
    for name, url in pages.items():
        assert client.get(url).status_code == 200, url
        seconds[name] = median_seconds(lambda: client.get(url), args.repeats)
    direct = median_seconds(lambda: latent_page(db.latent(j), db.meta), args.repeats)
    print(json.dumps({
        "machine": platform.processor() or platform.machine(), "threads": torch.get_num_threads(), "d_sae": 4608,
        "tokens_read": args.tokens,
        "page_ms": {k: round(1000 * v, 1) for k, v in seconds.items()},
        "page_over_budget_ratio": {k: round(v / BUDGET_S, 3) for k, v in seconds.items()},
        "latent_dashboard_served_over_direct": round(seconds["latent_dashboard"] / direct, 2),
    }, indent=2))


if __name__ == "__main__":
    main()
