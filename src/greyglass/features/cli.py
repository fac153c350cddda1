"""`greyglass features build|show|html|search|concept` and `greyglass steer-feature`."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..config import add_arguments, from_namespace
from ..data.corpus import CorpusConfig
from ..errors import GreyglassError
from ..runs import write_config, write_results
from .build import FeaturesConfig, build_features
from .db import DB_NAME, FeatureDB
from .load import load_sae


def register(sub: argparse._SubParsersAction) -> None:
    from ..cli import add_model_args, add_out_args

    p = sub.add_parser("features", help="what each SAE latent means: statistics, search, dashboards, concepts")
    fs = p.add_subparsers(dest="features_command", metavar="SUBCOMMAND", required=True)

    b = fs.add_parser("build", help="one pass over text: per-latent statistics, logit lens, labels -> features.sqlite",
                      description="Run text through the model and the SAE once and store, for every latent, its "
                      "density, histogram, top and quantile contexts, logit lens and a label, searchable.")
    b.add_argument("sae", help="SAE folder (cfg.json + sae_weights.safetensors)")
    add_model_args(b)
    add_arguments(b, FeaturesConfig)
    add_arguments(b, CorpusConfig)
    b.add_argument("--store", help="read activations (with token ids) from this activation store instead of running the model")
    b.add_argument("--out", help="output folder (default: <SAE>/features)")
    b.add_argument("--explainer", metavar="URL", help="OpenAI-compatible server (e.g. http://localhost:8000/v1): "
                   "explain the top latents and score each explanation")
    b.add_argument("--explainer-model", default="default", help="model name to send to the explainer server")
    b.add_argument("--explain-top", type=int, default=20, help="latents to explain, most frequent first (default: 20)")
    b.add_argument("--no-progress", action="store_true", help="no progress bar")
    b.set_defaults(func=run_build)

    s = fs.add_parser("show", help="print one latent's summary")
    s.add_argument("sae", help="SAE folder or features folder")
    s.add_argument("latent", type=int)
    s.set_defaults(func=run_show)

    h = fs.add_parser("html", help="write self-contained HTML dashboards (one page per latent + index)")
    h.add_argument("sae", help="SAE folder or features folder")
    h.add_argument("--out", required=True, help="folder for the pages")
    h.add_argument("--latent", type=int, action="append", help="only these latents (repeatable; default: all that fired)")
    h.set_defaults(func=run_html)

    q = fs.add_parser("search", help="find latents: by a token they fire on, by words in their label, or by a text")
    q.add_argument("sae", help="SAE folder (features built)")
    q.add_argument("--fires-on", metavar="WORD", help="latents whose top contexts centre on this token")
    q.add_argument("--query", help="full-text search over labels, explanations and tokens (FTS5 syntax)")
    q.add_argument("--text", help="latents most active on this text (runs the model)")
    q.add_argument("--limit", type=int, default=10)
    add_model_args(q)
    q.set_defaults(func=run_search)

    c = fs.add_parser("concept", help="latents that fire on a concept across languages and not on controls",
                      description="Run a concept's sentences in many languages (built in: "
                      "bridge, disease, money, deception, code_bug; or a JSON file) and control sentences through "
                      "the model and SAE; rank latents by how many languages they carry the concept in, on the "
                      "even-numbered sentences, and score them (AUROC, 95% interval) on the odd-numbered ones.")
    c.add_argument("sae", help="SAE folder")
    c.add_argument("--concept", default="bridge", help="built-in concept name or a JSON file (default: bridge)")
    c.add_argument("--ntrex", type=int, default=50,
                   help="NTREX-128 news sentences added as controls per language, to each of the ranking and the "
                   "held-out side (2 x N lines are read; default: 50)")
    c.add_argument("--top", type=int, default=10, help="latents to rank (default: 10)")
    c.add_argument("--features", help="features folder for dashboard links (default: <SAE>/features)")
    add_out_args(c, "features_concept", progress=False)
    add_model_args(c)
    c.set_defaults(func=run_concept)

    st = sub.add_parser("steer-feature", help="clamp or add an SAE latent during generation; measure the effect",
                        description="Generate with and without a latent clamped (or its decoder row added) at its "
                        "site, side by side, and measure the probability of the concept's tokens across values.")
    st.add_argument("--sae", required=True, help="SAE folder")
    st.add_argument("--latent", type=int, required=True)
    st.add_argument("--value", type=float, required=True, help="the latent's value (clamp) or coefficient (add)")
    st.add_argument("--mode", choices=["clamp", "add"], default="clamp", help="(default: clamp)")
    st.add_argument("--prompt", action="append", help="prompt to continue (repeatable; default: two neutral prompts)")
    st.add_argument("--max-new-tokens", type=int, default=40)
    st.add_argument("--concept", default="bridge", help="concept whose target words are measured (default: bridge)")
    st.add_argument("--target-word", action="append", help="measure these words instead of the concept's (repeatable)")
    st.add_argument("--values", help="comma-separated values for the effect curve (default: 0,v/4,v/2,v)")
    add_out_args(st, "steer_feature", progress=False)
    add_model_args(st)
    st.set_defaults(func=run_steer)


def features_dir(path: str | Path) -> Path:
    """The folder holding features.sqlite, given an SAE folder or the features folder itself."""
    path = Path(path)
    for folder in (path, path / "features"):
        if (folder / DB_NAME).is_file():
            return folder
    raise GreyglassError(f"no {DB_NAME} in {path} or {path / 'features'}; run `greyglass features build {path}` first")


def run_build(args: argparse.Namespace) -> int:
    from ..cli import model_from_args
    from ..data.corpus import corpus_fingerprint
    from ..store.reader import ActivationStore
    from .source import corpus_batches, store_batches

    cfg = from_namespace(FeaturesConfig, args)
    sae = load_sae(args.sae)
    out = Path(args.out) if args.out else Path(args.sae) / "features"
    lm = model_from_args(args)
    if args.store:
        store = ActivationStore(args.store)
        if store.manifest["model"]["sha256"] != lm.sha256:
            raise GreyglassError(f"activation store {args.store} was captured from {store.manifest['model']['name']}, "
                                 f"not {lm.name}; pass the same --model the store was captured with")
        batches = store_batches(store, sae.cfg.hook_name, cfg.tokens, cfg.batch_windows)
        data = {"store": str(args.store), "fingerprint": store.manifest["corpus"]["fingerprint"]}
    else:
        corpus = from_namespace(CorpusConfig, args)
        batches = corpus_batches(lm, sae.cfg.hook_name, corpus, cfg.tokens, cfg.batch_windows)
        data = {"corpus": vars(corpus), "fingerprint": corpus_fingerprint(corpus)}
    meta = {"sae": str(args.sae), "model": lm.name}
    write_config(out, "features", model=lm.provenance(), features=cfg, data=data, sae=str(args.sae))
    results = build_features(lm, sae, batches, cfg, out, meta, progress=not args.no_progress)
    if args.explainer:
        from .explainer import ExplainerClient, explain_latents

        results["explanations"] = explain_latents(FeatureDB(out), out / DB_NAME,
                                                  ExplainerClient(args.explainer, args.explainer_model),
                                                  args.explain_top)
    write_results(out, results)
    print(f"{results['n_tokens']:,} tokens, {results['d_sae']:,} latents ({results['dead_latents']:,} never fired), "
          f"mean L0 {results['mean_l0']:.1f}; {results['latent_tokens_per_second']:,} latents x tokens per second")
    print(f"feature database: {out / DB_NAME}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    from .dashboard import text_summary

    print(text_summary(FeatureDB(features_dir(args.sae)), args.latent))
    return 0


def run_html(args: argparse.Namespace) -> int:
    from .dashboard import write_html

    out = write_html(FeatureDB(features_dir(args.sae)), args.out, args.latent)
    print(f"dashboards: {out / 'index.html'}")
    return 0


def run_search(args: argparse.Namespace) -> int:
    if not (args.fires_on or args.query or args.text):
        raise GreyglassError("give --fires-on WORD, --query WORDS or --text TEXT")
    db = FeatureDB(features_dir(args.sae))
    if args.fires_on:
        print(f"latents firing on {args.fires_on!r}:")
        for r in db.fires_on(args.fires_on, args.limit):
            print(f"  {r['latent']:>6}  {r['n']:>3} contexts  max {r['max_act']:.3g}  {r['label']}")
    if args.query:
        print(f"latents matching {args.query!r}:")
        for r in db.search(args.query, args.limit):
            print(f"  {r['latent']:>6}  density {r['density']:.4%}  {r['label']}")
    if args.text:
        from ..cli import model_from_args
        from .source import text_latents

        acts = text_latents(model_from_args(args), load_sae(db.meta["sae"]), [args.text])[0]
        if not acts.any():
            raise GreyglassError(f"no latent fires on {args.text!r}: its tokens after the first (BOS, or the attention "
                                 "sink the SAE was trained without) activate none; give a longer text")
        top = acts.topk(min(args.limit, len(acts)))
        labels = {r["latent"]: r["label"] for r in db.summaries()}
        print("latents most active on the text:")
        for v, j in zip(top.values.tolist(), top.indices.tolist()):
            print(f"  {j:>6}  {v:8.3g}  {labels[j]}")
    return 0


def run_concept(args: argparse.Namespace) -> int:
    from ..cli import model_from_args
    from ..runs import default_run_dir
    from .concept import concept_table, format_table, load_concept
    from .dashboard import write_html

    concept = load_concept(args.concept)
    sae = load_sae(args.sae)
    lm = model_from_args(args)
    out = Path(args.out) if args.out else default_run_dir("features_concept")
    write_config(out, "features_concept", model=lm.provenance(), sae=str(args.sae), concept=vars(concept),
                 ntrex=args.ntrex, top=args.top)
    result = concept_table(lm, sae, concept, ntrex=args.ntrex, top=args.top)
    links: dict[int, str] = {}
    try:
        db = FeatureDB(features_dir(args.features or args.sae))
    except GreyglassError:
        print(f"(no feature database for {args.sae}: run `greyglass features build` to get dashboard links)")
    else:
        pages = write_html(db, out / "dashboards", [r["latent"] for r in result["ranked"]])
        links = {r["latent"]: str(pages / f"latent_{r['latent']}.html") for r in result["ranked"]}
        for r in result["ranked"]:
            r["dashboard"] = f"dashboards/latent_{r['latent']}.html"
    write_results(out, result)
    print(format_table(result, links))
    print(f"results: {out / 'results.json'}")
    return 0


def run_steer(args: argparse.Namespace) -> int:
    from ..atomic import write_text
    from ..cli import model_from_args
    from ..runs import default_run_dir
    from .concept import load_concept
    from ..models.generate import reply
    from .steer import effect_svg, steering, steering_effect, target_ids, target_probability

    sae = load_sae(args.sae)
    lm = model_from_args(args)
    words = tuple(args.target_word) if args.target_word else load_concept(args.concept).target_words
    values = ([float(v) for v in args.values.split(",")] if args.values
              else [0.0, args.value / 4, args.value / 2, args.value])
    prompts = args.prompt or ["Tell me about your weekend.", "What should I see on my next trip?"]
    out = Path(args.out) if args.out else default_run_dir("steer_feature")
    write_config(out, "steer_feature", model=lm.provenance(), sae=str(args.sae), latent=args.latent, value=args.value,
                 mode=args.mode, prompts=prompts, target_words=list(words), values=values)
    texts = []
    for prompt in prompts:
        base = reply(lm, prompt, args.max_new_tokens)
        with steering(lm, sae, args.latent, args.value, args.mode):
            steered = reply(lm, prompt, args.max_new_tokens)
        texts.append({"prompt": prompt, "baseline": base, "steered": steered})
        print(f"prompt: {prompt}\n  baseline: {base!r}\n  steered ({args.mode} latent {args.latent} = {args.value:g}): {steered!r}")
    from .steer import DEFAULT_PROMPTS

    baseline = target_probability(lm, DEFAULT_PROMPTS, target_ids(lm, words))
    effect = steering_effect(lm, sae, args.latent, values, words, args.mode)
    write_text(out / "effect.svg", effect_svg(effect))
    write_results(out, {"generations": texts, "target_words": list(words), "mode": args.mode,
                        "baseline_p_target": sum(baseline) / len(baseline), "effect": effect})
    print(f"P(next token is one of {list(words)}) over {len(DEFAULT_PROMPTS)} neutral prompts: "
          f"unsteered {sum(baseline) / len(baseline):.3g}; "
          + ", ".join(f"{r['value']:g} -> {r['p_target']['value']:.3g}" for r in effect))
    print(f"results: {out / 'results.json'}")
    return 0
