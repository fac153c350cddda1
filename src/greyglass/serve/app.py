"""The browser app: routes over a `Catalog` of run folders and a lazily loaded `LiveModel`.

Handlers are async and run on the event loop thread; each thread keeps its own cached
`FeatureDB` (an SQLite connection), and model work goes to a worker thread under the live model's lock. Every error a request can cause becomes a 4xx page with one plain sentence.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from ..errors import GreyglassError
from ..latents.dashboard import latent_page
from ..latents.db import FeatureDB
from ..latents.source import text_latents
from ..models.lm import LoadedModel
from ..models.loader import load_model
from .catalog import Catalog, Run, read_items
from .live import MAX_COEF, MAX_NEW_TOKENS, LiveModel, check_text
from .pages import (Generation, ProbeRow, Table, TokenLatents, error_page, href, link, page, positive_shades, pretty_json,
                    short, token_boxes)

MAX_QUERY_CHARS = 200
MAX_LIMIT = 200
ITEMS_PER_PAGE = 50
MAX_TEXT_CHARS = 2000
STEER_MODES = [("add", "add its decoder row"), ("clamp", "clamp it to the coefficient")]


def int_param(request: Request, name: str, default: int | None = None, lo: int = 0, hi: int = 10**9) -> int:
    raw = request.query_params.get(name, "")
    if raw == "" and default is not None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise HTTPException(400, f"{name} must be a whole number, got {short(raw, 40)!r}") from None
    if not lo <= value <= hi:
        raise HTTPException(400, f"{name} must be between {lo} and {hi}, got {value}")
    return value


def float_param(request: Request, name: str, default: float, bound: float) -> float:
    raw = request.query_params.get(name, "")
    try:
        value = float(raw) if raw else default
    except ValueError:
        raise HTTPException(400, f"{name} must be a number, got {short(raw, 40)!r}") from None
    if not math.isfinite(value) or abs(value) > bound:
        raise HTTPException(400, f"{name} must be a finite number between -{bound:g} and {bound:g}")
    return value


def str_param(request: Request, name: str, limit: int = MAX_QUERY_CHARS) -> str:
    value = request.query_params.get(name, "")
    if len(value) > limit:
        raise HTTPException(413, f"{name} is {len(value):,} characters; the limit is {limit:,}")
    return value


def create_app(runs_dir: str | Path, model: str | None = None,
               load: Callable[[str], LoadedModel] = load_model, hosts: list[str] | None = None) -> Starlette:
    """The app over `runs_dir`; `model` overrides each run's own model spec.

    `hosts` limits the Host header a request may carry (e.g. `["127.0.0.1", "localhost"]`), so a web
    page elsewhere cannot reach this server by pointing a domain name at 127.0.0.1 (DNS rebinding).
    """
    catalog = Catalog(runs_dir)
    live_model = LiveModel(model, load)
    local = threading.local()  # SQLite connections may only be used on the thread that opened them

    def get_run(rid: str) -> Run:
        try:
            return catalog.run(rid)
        except KeyError as e:
            raise HTTPException(404, e.args[0]) from None

    def feature_db(rid: str) -> tuple[Run, FeatureDB]:
        run = get_run(rid)
        if not run.has_features:
            raise HTTPException(404, f"run {rid!r} has no feature database; build one with `greyglass features build`")
        dbs = local.__dict__.setdefault("dbs", {})
        if run.folder not in dbs:
            dbs[run.folder] = FeatureDB(run.folder)
        return run, dbs[run.folder]

    async def on_model(fn: Callable[[], Any]) -> Any:
        def locked():
            with live_model.lock:
                return fn()
        return await run_in_threadpool(locked)

    async def runs(request: Request) -> HTMLResponse:
        rows = [(link(f"/run/{r.id}", r.id), r.kind, r.model, r.date, catalog.section(r).headline) for r in catalog.runs()]
        return HTMLResponse(page("runs.html", "Runs", rows=rows, root=str(catalog.root)))

    async def run_page(request: Request) -> HTMLResponse:
        run = get_run(request.path_params["rid"])
        facts: list[Any] = [x for x in (run.kind, run.model, run.date) if x]
        if run.has_items:
            facts.append(link(f"/eval/{run.id}", "Per-item results"))
        if run.has_features:
            facts.append(link(f"/features/{run.id}/index.html", "Search its features"))
        if run.kind == "diff_latents":
            facts.append(link(f"/crosscoder/{run.id}/index.html", "Its latents' dashboards"))
        return HTMLResponse(page("run.html", run.id, run=run, facts=facts, section=catalog.section(run).render("s0"),
                                 results_json=pretty_json(run.results), config_json=pretty_json(run.config)))

    items_cache: dict[Path, tuple[tuple[float, int], list[dict[str, Any]]]] = {}

    def eval_items(rid: str) -> tuple[Run, list[dict[str, Any]]]:
        """The run's items (an eval's items.jsonl, a red-teaming run's cases.jsonl), re-read only when the file
        changed (mtime, size)."""
        run = get_run(rid)
        path = run.items_file
        if path is None:
            raise HTTPException(404, f"run {rid!r} has no items.jsonl or cases.jsonl, so there are no per-item results "
                                "to show")
        st = path.stat()
        key = (st.st_mtime, st.st_size)
        if items_cache.get(run.folder, (None,))[0] != key:
            items_cache[run.folder] = (key, read_items(run))
        return run, items_cache[run.folder][1]

    async def eval_page(request: Request) -> HTMLResponse:
        run, items = eval_items(request.path_params["rid"])
        columns = list(dict.fromkeys(k for it in items[:50] for k in it))[:8]
        field, value = str_param(request, "field"), str_param(request, "value")
        numbered = list(enumerate(items))
        if field:
            if not any(field in it for it in items):
                raise HTTPException(400, f"no item has a field {field!r}; the fields are {', '.join(columns)}")
            numbered = [(i, it) for i, it in numbered if short(it.get(field, ""), 10**6).lower() == value.lower()]
        pages = max(1, math.ceil(len(numbered) / ITEMS_PER_PAGE))
        current = int_param(request, "page", 1, 1, pages)
        shown = numbered[(current - 1) * ITEMS_PER_PAGE: current * ITEMS_PER_PAGE]
        rows = [[link(f"/item/{run.id}/{i}", i)] + [short(it.get(c, "")) for c in columns] for i, it in shown]
        pager = [link(f"/eval/{run.id}", p, page=p, field=field, value=value) if p != current else p
                 for p in range(1, pages + 1)]
        return HTMLResponse(page("eval.html", f"Items of {run.id}", run=run, n_shown=len(numbered), n_items=len(items),
                                 run_link=link(f"/run/{run.id}", "the run"), pager=pager, action=href(f"/eval/{run.id}"),
                                 field_choices=[("", "(all items)")] + [(c, c) for c in columns], field=field, value=value,
                                 max_chars=MAX_QUERY_CHARS, columns=columns, rows=rows))

    async def item_page(request: Request) -> HTMLResponse:
        run, items = eval_items(request.path_params["rid"])
        n = request.path_params["n"]
        if n >= len(items):
            raise HTTPException(404, f"run {run.id!r} has items 0 to {len(items) - 1}; there is no item {n}")
        item = items[n]
        rows = [(k, v if isinstance(v, str) else short(v, 2000)) for k, v in item.items()]
        links = [link(f"/item/{run.id}/{n - 1}", "previous")] if n > 0 else []
        links.append(link(f"/eval/{run.id}", "all items", page=n // ITEMS_PER_PAGE + 1))
        if n + 1 < len(items):
            links.append(link(f"/item/{run.id}/{n + 1}", "next"))
        return HTMLResponse(page("item.html", f"Item {n}", run=run, n=n, links=links, rows=rows))

    async def features_list(request: Request) -> HTMLResponse:
        rows = []
        for r in catalog.feature_runs():
            _, db = feature_db(r.id)
            rows.append((link(f"/features/{r.id}/index.html", r.id), db.meta.get("site", ""), db.meta.get("model", ""),
                         f"{db.d_sae:,}", f"{db.meta.get('n_tokens', 0):,}"))
        return HTMLResponse(page("features.html", "Features", rows=rows))

    async def features_index(request: Request) -> HTMLResponse:
        run, db = feature_db(request.path_params["rid"])
        fires_on, query, text = str_param(request, "fires_on"), str_param(request, "q"), str_param(request, "text")
        limit = int_param(request, "limit", 20, 1, MAX_LIMIT)
        base = f"/features/{run.id}/"
        latent_link = lambda j: link(f"{base}latent_{j}.html", j)
        results = []
        if fires_on.strip():
            results.append(Table(f"Latents firing on {fires_on!r}", ["latent", "contexts", "max", "label"],
                                 [(latent_link(r["latent"]), r["n"], f"{r['max_act']:.3g}", r["label"] or "")
                                  for r in db.fires_on(fires_on, limit)]))
        if query.strip():
            results.append(Table(f"Latents matching {query!r}", ["latent", "density", "label"],
                                 [(latent_link(r["latent"]), f"{r['density']:.4%}", r["label"] or "")
                                  for r in db.search(query, limit)]))
        if text.strip():
            lm = await on_model(lambda: live_model.model(run.model_spec))
            sae = await on_model(lambda: live_model.sae(str(db.meta["sae"])))
            acts = (await on_model(lambda: text_latents(lm, sae, [text])))[0]
            top = acts.topk(min(limit, len(acts)))
            names = {r["latent"]: r["label"] for r in db.latent_rows()}
            results.append(Table("Latents most active on the text", ["latent", "max activation", "label"],
                                 [(latent_link(j), f"{v:.3g}", names.get(j) or "")
                                  for v, j in zip(top.values.tolist(), top.indices.tolist()) if v > 0]))
        if not results:
            live = sorted((r for r in db.latent_rows() if r["density"] > 0), key=lambda r: -r["density"])[:limit]
            results.append(Table("Most frequent latents", ["latent", "density", "max", "label"],
                                 [(latent_link(r["latent"]), f"{r['density']:.4%}", f"{r['max_act']:.3g}", r["label"] or "")
                                  for r in live]))
        return HTMLResponse(page("feature_search.html", f"Features of {run.id}", run=run, site=db.meta.get("site", ""),
                                 d_sae=db.d_sae, n_tokens=db.meta.get("n_tokens", 0), action=href(base + "index.html"),
                                 fires_on=fires_on, q=query, text=text, max_chars=MAX_QUERY_CHARS, results=results))

    async def latent(request: Request) -> HTMLResponse:
        _, db = feature_db(request.path_params["rid"])
        j = request.path_params["n"]
        if j >= db.d_sae:
            raise HTTPException(404, f"latent {j} is out of range; this SAE has latents 0 to {db.d_sae - 1}")
        return HTMLResponse(latent_page(db.latent(j), db.meta, in_browser=True))

    def crosscoder_results(rid: str):
        from ..diff.config import LatentsResults
        from ..records import from_json

        run = get_run(rid)
        if run.kind != "diff_latents":
            raise HTTPException(404, f"run {rid!r} is not a `diff report` run, so it has no crosscoder latents to show")
        return from_json(LatentsResults, run.results, str(run.folder / "results.json"))

    async def crosscoder_index(request: Request) -> HTMLResponse:
        from ..diff.dashboard import index_page

        rid = request.path_params["rid"]
        return HTMLResponse(index_page(crosscoder_results(rid), in_browser=True, prefix=f"/crosscoder/{rid}/"))

    async def crosscoder_latent(request: Request) -> HTMLResponse:
        from ..diff.dashboard import described, latent_page

        res, j = crosscoder_results(request.path_params["rid"]), request.path_params["n"]
        found = [r for r in described(res) if r.latent == j]
        if not found:
            raise HTTPException(404, f"latent {j} is not one this report describes; see its index of latents")
        return HTMLResponse(latent_page(res, found[0], in_browser=True))

    def feature_choices() -> list[tuple[str, str]]:
        return [(r.id, r.id) for r in catalog.feature_runs()]

    async def text_page(request: Request) -> HTMLResponse:
        text = str_param(request, "text", MAX_TEXT_CHARS)
        choices = feature_choices()
        chosen = str_param(request, "features") or (choices[0][0] if choices else "")
        latents, probes, skipped = None, None, []
        if text:
            check_text(text)
            spec = get_run(chosen).model_spec if chosen else None
            lm = await on_model(lambda: live_model.model(spec))
            if chosen:
                run, db = feature_db(chosen)
                sae = await on_model(lambda: live_model.sae(str(db.meta["sae"])))
                tl = await on_model(lambda: live_model.token_latents(lm, sae, text))
                seen = sorted({j for top in tl.top for j, _ in top})
                latents = TokenLatents(sae.cfg.hook_name,
                                       token_boxes(tl.tokens, [" ".join(f"{j}:{v:.2g}" for j, v in top[:3]) for top in tl.top]),
                                       [link(f"/features/{run.id}/latent_{j}.html", j) for j in seen])
            tokens, scored, skipped = await on_model(lambda: live_model.probe_scores(lm, text, catalog.directions()))
            probes = [ProbeRow(p.name, p.kind, p.site,
                               token_boxes(tokens, [f"{s:+.2f}" for s in p.scores], positive_shades(p.scores)))
                      for p in scored]
        return HTMLResponse(page("text.html", "Text", text=text, choices=choices, chosen=chosen, max_chars=MAX_TEXT_CHARS,
                                 latents=latents, probes=probes, skipped=skipped))

    async def steer_page(request: Request) -> HTMLResponse:
        prompt = str_param(request, "prompt", MAX_TEXT_CHARS)
        vector = str_param(request, "vector")
        latent_raw = request.query_params.get("latent", "")
        coef = float_param(request, "coef", 1.0, MAX_COEF)
        max_tokens = int_param(request, "max_tokens", 32, 1, MAX_NEW_TOKENS)
        mode = request.query_params.get("mode", "add")
        if mode not in dict(STEER_MODES):
            raise HTTPException(400, "mode must be add or clamp")
        choices = ([(f"direction:{d}", f"direction {d}") for d in catalog.directions()]
                   + [(f"features:{r}", f"SAE latent of {r}") for r, _ in feature_choices()])
        generation = None
        if prompt:
            check_text(prompt, "prompt")
            kind, _, rid = vector.partition(":")
            if kind == "direction":
                folder = catalog.directions().get(rid)
                if folder is None:
                    raise HTTPException(404, f"no saved direction {rid!r} under the runs folder")
                lm = await on_model(lambda: live_model.model(None))
                d = await on_model(lambda: live_model.direction(folder))
                apply, what = LiveModel.by_direction(lm, d, coef), f"{coef:g} typical residual norms along direction {rid} at {d.site}"
            elif kind == "features":
                run, db = feature_db(rid)
                j = int_param(request, "latent", None, 0, db.d_sae - 1)
                lm = await on_model(lambda: live_model.model(run.model_spec))
                sae = await on_model(lambda: live_model.sae(str(db.meta["sae"])))
                apply = LiveModel.by_latent(lm, sae, j, coef, mode)
                what = (f"{coef:g} × decoder row of latent {j} at {sae.cfg.hook_name}" if mode == "add" else
                        f"the decoder row of latent {j} at {sae.cfg.hook_name} so that the latent reads {coef:g}")
            else:
                raise HTTPException(400, "choose a vector: a saved direction or an SAE's latent")
            baseline, steered = await on_model(lambda: live_model.steer(lm, prompt, max_tokens, apply))
            generation = Generation(lm.name, what, baseline, steered)
        return HTMLResponse(page("steer.html", "Steering", prompt=prompt, max_chars=MAX_TEXT_CHARS, choices=choices,
                                 vector=vector, latent=latent_raw, coef=coef, modes=STEER_MODES, mode=mode,
                                 max_new_tokens=MAX_NEW_TOKENS, max_tokens=max_tokens, generation=generation))

    async def on_http_error(request: Request, exc: HTTPException) -> HTMLResponse:
        return HTMLResponse(error_page(exc.status_code, str(exc.detail)), status_code=exc.status_code)

    async def on_user_error(request: Request, exc: GreyglassError) -> HTMLResponse:
        return HTMLResponse(error_page(400, str(exc)), status_code=400)

    async def on_crash(request: Request, exc: Exception) -> HTMLResponse:
        return HTMLResponse(error_page(500, "Something went wrong inside greyglass; the server log has the details."),
                            status_code=500)

    routes = [
        Route("/", runs),
        Route("/run/{rid:path}", run_page),
        Route("/eval/{rid:path}", eval_page),
        Route("/item/{rid:path}/{n:int}", item_page),
        Route("/features", features_list),
        Route("/features/{rid:path}/index.html", features_index),
        Route("/features/{rid:path}/latent_{n:int}.html", latent),
        Route("/crosscoder/{rid:path}/index.html", crosscoder_index),
        Route("/crosscoder/{rid:path}/latent_{n:int}.html", crosscoder_latent),
        Route("/text", text_page),
        Route("/steer", steer_page),
    ]
    middleware = [Middleware(TrustedHostMiddleware, allowed_hosts=hosts)] if hosts else []
    return Starlette(routes=routes, middleware=middleware,
                     exception_handlers={HTTPException: on_http_error, GreyglassError: on_user_error, Exception: on_crash})
