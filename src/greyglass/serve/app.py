"""The browser app: routes over a `Catalog` of run folders and a lazily loaded `Lab`.

Handlers are async and run on the event loop thread; each thread keeps its own cached
`FeatureDB` (an SQLite connection), and model work goes to a worker thread under the lab's lock. Every error a request can cause becomes a 4xx page with one plain sentence.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from html import escape
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
from ..features.dashboard import latent_page
from ..features.db import FeatureDB
from ..features.source import text_latents
from ..models import LoadedModel, load_model
from ..report.build import section_for
from .catalog import ITEMS, Catalog, Run, read_items
from .lab import MAX_COEF, MAX_NEW_TOKENS, Lab, check_text
from .pages import (error_page, href, layout, link, nav_bar, options, raw_json, short, table,
                    tokens_html)

MAX_QUERY_CHARS = 200
MAX_LIMIT = 200
ITEMS_PER_PAGE = 50


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
    lab = Lab(model, load)
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

    async def in_lab(fn: Callable[[], Any]) -> Any:
        def locked():
            with lab.lock:
                return fn()
        return await run_in_threadpool(locked)

    async def runs(request: Request) -> HTMLResponse:
        rows = [(link(href(f"/run/{r.id}"), r.id), escape(r.kind), escape(r.model), escape(r.date),
                 escape("; ".join(f"{k} {v}" for k, v in r.headline_numbers())))
                for r in catalog.runs()]
        body = (f"<h1>Runs</h1><p class='sub'>{len(rows)} run folders under <code>{escape(str(catalog.root))}</code>, "
                "newest first. Open one for its plain-language reading, its numbers and its raw results.</p>"
                + table(["run", "kind", "model", "date", "headline numbers"], rows, raw=True))
        return HTMLResponse(layout("Runs", body))

    async def run_page(request: Request) -> HTMLResponse:
        run = get_run(request.path_params["rid"])
        try:
            section = section_for(run.folder).render("s0")
        except (GreyglassError, KeyError, TypeError, ValueError) as e:
            section = f'<p class="error">No report section for this run: {escape(str(e))}</p>'
        extra = []
        if run.has_items:
            extra.append(link(href(f"/eval/{run.id}"), "Per-item results"))
        if run.has_features:
            extra.append(link(href(f"/features/{run.id}/index.html"), "Search its features"))
        facts = [escape(x) for x in (run.kind, run.model, run.date) if x] + extra
        body = (f"<h1>{escape(run.id)}</h1><p class='sub'>{' · '.join(facts)}</p>{section}"
                f"<h2>results.json</h2>{raw_json(run.results)}<details><summary>config.json</summary>{raw_json(run.config)}</details>")
        return HTMLResponse(layout(run.id, body))

    items_cache: dict[Path, tuple[tuple[float, int], list[dict[str, Any]]]] = {}

    def eval_items(rid: str) -> tuple[Run, list[dict[str, Any]]]:
        """The run's items, re-read only when items.jsonl changed (mtime, size)."""
        run = get_run(rid)
        if not run.has_items:
            raise HTTPException(404, f"run {rid!r} has no items.jsonl, so there are no per-item results to show")
        st = (run.folder / ITEMS).stat()
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
        page = int_param(request, "page", 1, 1, pages)
        shown = numbered[(page - 1) * ITEMS_PER_PAGE: page * ITEMS_PER_PAGE]
        rows = [[link(href(f"/item/{run.id}/{i}"), i)] + [escape(short(it.get(c, ""))) for c in columns] for i, it in shown]
        pager = " ".join(link(href(f"/eval/{run.id}", page=p, field=field, value=value), p) if p != page else f"<b>{p}</b>"
                         for p in range(1, pages + 1))
        form = (f'<form method="get" action="{href(f"/eval/{run.id}")}"><label>only items whose field'
                f'<select name="field">{options([("", "(all items)")] + [(c, c) for c in columns], field)}</select></label>'
                f'<label>equals<input name="value" value="{escape(value)}" maxlength="{MAX_QUERY_CHARS}"></label>'
                f'<button type="submit">Filter</button></form>')
        body = (f"<h1>Items of {escape(run.id)}</h1><p class='sub'>{len(numbered):,} of {len(items):,} items · "
                f"{link(href(f'/run/{run.id}'), 'the run')} · page {pager}</p>{form}"
                + table(["#", *columns], rows, raw=True))
        return HTMLResponse(layout(f"Items of {run.id}", body))

    async def item_page(request: Request) -> HTMLResponse:
        run, items = eval_items(request.path_params["rid"])
        n = request.path_params["n"]
        if n >= len(items):
            raise HTTPException(404, f"run {run.id!r} has items 0 to {len(items) - 1}; there is no item {n}")
        item = items[n]
        rows = [(k, v if isinstance(v, str) else short(v, 2000)) for k, v in item.items()]
        nav = " · ".join(x for x in [link(href(f"/item/{run.id}/{n - 1}"), "previous") if n > 0 else "",
                                     link(href(f"/eval/{run.id}", page=n // ITEMS_PER_PAGE + 1), "all items"),
                                     link(href(f"/item/{run.id}/{n + 1}"), "next") if n + 1 < len(items) else ""] if x)
        body = (f"<h1>Item {n} of {escape(run.id)}</h1><p class='sub'>{nav}</p>"
                + table(["field", "value"], [(escape(k), f"<div style='white-space:pre-wrap'>{escape(v)}</div>") for k, v in rows],
                        raw=True))
        return HTMLResponse(layout(f"Item {n}", body))

    async def features_list(request: Request) -> HTMLResponse:
        rows = []
        for r in catalog.feature_runs():
            _, db = feature_db(r.id)
            rows.append((link(href(f"/features/{r.id}/index.html"), r.id), escape(str(db.meta.get("site", ""))),
                         escape(str(db.meta.get("model", ""))), f"{db.d_sae:,}", f"{db.meta.get('n_tokens', 0):,}"))
        body = ("<h1>SAE features</h1><p class='sub'>Feature databases found under the runs folder "
                "(made by <code>greyglass features build</code>).</p>"
                + table(["features", "site", "model", "latents", "tokens read"], rows, raw=True))
        return HTMLResponse(layout("Features", body))

    async def features_index(request: Request) -> HTMLResponse:
        run, db = feature_db(request.path_params["rid"])
        fires_on, query, text = str_param(request, "fires_on"), str_param(request, "q"), str_param(request, "text")
        limit = int_param(request, "limit", 20, 1, MAX_LIMIT)
        base = f"/features/{run.id}/"
        latent_link = lambda j: link(href(f"{base}latent_{j}.html"), j)
        results = ""
        if fires_on.strip():
            rows = [(latent_link(r["latent"]), r["n"], f"{r['max_act']:.3g}", escape(r["label"] or ""))
                    for r in db.fires_on(fires_on, limit)]
            results += f"<h2>Latents firing on {escape(repr(fires_on))}</h2>" + table(["latent", "contexts", "max", "label"], rows, raw=True)
        if query.strip():
            rows = [(latent_link(r["latent"]), f"{r['density']:.4%}", escape(r["label"] or "")) for r in db.search(query, limit)]
            results += f"<h2>Latents matching {escape(repr(query))}</h2>" + table(["latent", "density", "label"], rows, raw=True)
        if text.strip():
            lm = await in_lab(lambda: lab.model(run.model_spec))
            sae = await in_lab(lambda: lab.sae(str(db.meta["sae"])))
            acts = (await in_lab(lambda: text_latents(lm, sae, [text])))[0]
            top = acts.topk(min(limit, len(acts)))
            names = {r["latent"]: r["label"] for r in db.summaries()}
            rows = [(latent_link(j), f"{v:.3g}", escape(names.get(j) or "")) for v, j in zip(top.values.tolist(), top.indices.tolist())
                    if v > 0]
            results += f"<h2>Latents most active on the text</h2>" + table(["latent", "max activation", "label"], rows, raw=True)
        if not results:
            live = sorted((r for r in db.summaries() if r["density"] > 0), key=lambda r: -r["density"])[:limit]
            results = (f"<h2>Most frequent latents</h2>"
                       + table(["latent", "density", "max", "label"],
                               [(latent_link(r["latent"]), f"{r['density']:.4%}", f"{r['max_act']:.3g}", escape(r["label"] or ""))
                                for r in live], raw=True))
        form = (f'<form method="get" action="{href(base + "index.html")}">'
                f'<label>fires on word<input name="fires_on" value="{escape(fires_on)}" maxlength="{MAX_QUERY_CHARS}"></label>'
                f'<label>full-text search<input name="q" value="{escape(query)}" maxlength="{MAX_QUERY_CHARS}"></label>'
                f'<label>most active on text<input name="text" value="{escape(text)}" maxlength="{MAX_QUERY_CHARS}"></label>'
                f'<button type="submit">Search</button></form>')
        body = (f"<h1>Features of {escape(run.id)}</h1><p class='sub'>{escape(str(db.meta.get('site', '')))} · "
                f"{db.d_sae:,} latents · {db.meta.get('n_tokens', 0):,} tokens read</p>"
                "<p class='sub'>Search by a word the latent fires on, by words in its label, explanation or promoted "
                "tokens (full text), or by the text it is most active on (runs the model). Automatic labels read "
                "<i>tokens it fires on -&gt; tokens it makes more likely next</i>.</p>"
                f"{form}{results}")
        return HTMLResponse(layout(f"Features of {run.id}", body))

    async def latent(request: Request) -> HTMLResponse:
        _, db = feature_db(request.path_params["rid"])
        j = request.path_params["n"]
        if j >= db.d_sae:
            raise HTTPException(404, f"latent {j} is out of range; this SAE has latents 0 to {db.d_sae - 1}")
        page = latent_page(db.latent(j), db.meta)
        return HTMLResponse(page.replace("<body>", "<body>" + nav_bar(), 1))

    def feature_choices() -> list[tuple[str, str]]:
        return [(r.id, r.id) for r in catalog.feature_runs()]

    async def text_page(request: Request) -> HTMLResponse:
        text = str_param(request, "text", 2000)
        choices = feature_choices()
        chosen = str_param(request, "features") or (choices[0][0] if choices else "")
        form = (f'<form method="get" action="/text"><label style="flex:1 1 100%">text'
                f'<textarea name="text" maxlength="2000">{escape(text)}</textarea></label>'
                f'<label>SAE<select name="features">{options(choices, chosen)}</select></label>'
                f'<button type="submit">Show latents and probes</button></form>')
        out = ""
        if text:
            check_text(text)
            spec = get_run(chosen).model_spec if chosen else None
            lm = await in_lab(lambda: lab.model(spec))
            if chosen:
                run, db = feature_db(chosen)
                sae = await in_lab(lambda: lab.sae(str(db.meta["sae"])))
                tl = await in_lab(lambda: lab.token_latents(lm, sae, text))
                base = f"/features/{run.id}/"
                out += (f"<h2>Latents on each token ({escape(sae.cfg.hook_name)})</h2><p class='sub'>Under each token: its most "
                        "active latents as latent:activation. Open a latent's dashboard below.</p>"
                        + tokens_html(tl.tokens, [" ".join(f"{j}:{v:.2g}" for j, v in top[:3]) for top in tl.top]))
                seen = sorted({j for top in tl.top for j, _ in top})
                out += "<p>" + " ".join(link(href(f"{base}latent_{j}.html"), j) for j in seen) + "</p>"
            tokens, probes, skipped = await in_lab(lambda: lab.probe_scores(lm, text, catalog.directions()))
            out += "<h2>Saved probes and directions</h2>"
            for p in probes:
                peak = max(abs(s) for s in p.scores) or 1.0
                out += (f"<h3>{escape(p.name)} <small>({escape(p.kind)} at {escape(p.site)})</small></h3>"
                        + tokens_html(tokens, [f"{s:+.2f}" for s in p.scores], [max(s, 0) / peak for s in p.scores]))
            if not probes:
                out += "<p>No saved direction under the runs folder fits this model.</p>"
            out += "".join(f"<p class='sub'>skipped {escape(s)}</p>" for s in skipped)
        body = ("<h1>Text → latents and probes</h1><p class='sub'>Type text to see which SAE latents fire on each "
                "token, and what each saved probe scores it.</p>" + form + out)
        return HTMLResponse(layout("Text", body))

    async def steer_page(request: Request) -> HTMLResponse:
        prompt = str_param(request, "prompt", 2000)
        vector = str_param(request, "vector")
        latent_raw = request.query_params.get("latent", "")
        coef = float_param(request, "coef", 1.0, MAX_COEF)
        max_tokens = int_param(request, "max_tokens", 32, 1, MAX_NEW_TOKENS)
        mode = request.query_params.get("mode", "add")
        if mode not in ("add", "clamp"):
            raise HTTPException(400, "mode must be add or clamp")
        choices = ([(f"direction:{d}", f"direction {d}") for d in catalog.directions()]
                   + [(f"features:{r}", f"SAE latent of {r}") for r, _ in feature_choices()])
        form = (f'<form method="get" action="/steer"><label style="flex:1 1 100%">prompt'
                f'<textarea name="prompt" maxlength="2000">{escape(prompt)}</textarea></label>'
                f'<label>vector<select name="vector">{options(choices, vector)}</select></label>'
                f'<label>latent (for an SAE)<input name="latent" value="{escape(latent_raw)}" size="6"></label>'
                f'<label>coefficient<input name="coef" value="{coef:g}" size="6"></label>'
                f'<label>latent mode<select name="mode">{options([("add", "add its decoder row"), ("clamp", "clamp it to the coefficient")], mode)}</select></label>'
                f'<label>max new tokens (≤ {MAX_NEW_TOKENS})<input name="max_tokens" value="{max_tokens}" size="4"></label>'
                f'<button type="submit">Generate</button></form>')
        out = ""
        if prompt:
            check_text(prompt, "prompt")
            kind, _, rid = vector.partition(":")
            if kind == "direction":
                folder = catalog.directions().get(rid)
                if folder is None:
                    raise HTTPException(404, f"no saved direction {rid!r} under the runs folder")
                lm = await in_lab(lambda: lab.model(None))
                d = await in_lab(lambda: lab.direction(folder))
                apply, what = Lab.by_direction(lm, d, coef), f"{coef:g} typical residual norms along direction {rid} at {d.site}"
            elif kind == "features":
                run, db = feature_db(rid)
                j = int_param(request, "latent", None, 0, db.d_sae - 1)
                lm = await in_lab(lambda: lab.model(run.model_spec))
                sae = await in_lab(lambda: lab.sae(str(db.meta["sae"])))
                apply = Lab.by_latent(lm, sae, j, coef, mode)
                what = (f"{coef:g} × decoder row of latent {j} at {sae.cfg.hook_name}" if mode == "add" else
                        f"the decoder row of latent {j} at {sae.cfg.hook_name} so that the latent reads {coef:g}")
            else:
                raise HTTPException(400, "choose a vector: a saved direction or an SAE's latent")
            baseline, steered = await in_lab(lambda: lab.steer(lm, prompt, max_tokens, apply))
            out = (f"<h2>Greedy generations ({escape(lm.name)})</h2><p class='sub'>Steered: adds {escape(what)}, at every position.</p>"
                   f'<div class="gen"><div><b>baseline</b>\n<span id="baseline">{escape(baseline)}</span></div>'
                   f'<div><b>steered</b>\n<span id="steered">{escape(steered)}</span></div></div>')
        body = ("<h1>Steering playground</h1><p class='sub'>Add a saved direction or an SAE latent's decoder row to the "
                "model's activations and compare its generation with the unsteered one.</p>" + form + out)
        return HTMLResponse(layout("Steering", body))

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
        Route("/text", text_page),
        Route("/steer", steer_page),
    ]
    middleware = [Middleware(TrustedHostMiddleware, allowed_hosts=hosts)] if hosts else []
    return Starlette(routes=routes, middleware=middleware,
                     exception_handlers={HTTPException: on_http_error, GreyglassError: on_user_error, Exception: on_crash})
