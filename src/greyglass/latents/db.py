"""The feature database: one SQLite file (with FTS5 full-text search) per SAE.

Tables:
- `meta(key, value)`: SAE, site, model, tokens seen;
- `latents`: density, mean/max activation, histogram, logit lens, label, explanation;
- `contexts`: top and quantile-sample contexts (token ids and the latent's activations);
- `fires(token, latent, act)`: the centre token of every stored context, indexed, which
  answers "which latents fire on 'bridge'?" with one index lookup;
- `vocab(id, text)`: the decoded text of every token id used above;
- `latent_text`: an FTS5 index over label, explanation, fired-on tokens and promoted tokens
  ("latents whose label mentions money").
SQLite ships with Python, needs no server, and answers these in milliseconds for 16k latents.
"""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from ..atomic import atomic_path
from ..errors import GreyglassError
from ..models.lens import LogitLens
from .labels import auto_label
from .stats import HIST_EDGES, FeatureStats, TopContexts

DB_NAME = "features.sqlite"


def features_dir(path: str | Path) -> Path:
    """The folder holding features.sqlite, given an SAE folder or the features folder itself."""
    path = Path(path)
    for folder in (path, path / "features"):
        if (folder / DB_NAME).is_file():
            return folder
    raise GreyglassError(f"no {DB_NAME} in {path} or {path / 'features'}; run `greyglass features build {path}` first")

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE latents (latent INTEGER PRIMARY KEY, n_active INTEGER, density REAL, mean_active REAL,
    max_act REAL, hist TEXT, promoted TEXT, suppressed TEXT, label TEXT, explanation TEXT, detection REAL);
CREATE TABLE contexts (latent INTEGER, kind TEXT, rank INTEGER, act REAL, centre INTEGER,
    tokens TEXT, acts TEXT);
CREATE INDEX contexts_latent ON contexts (latent, kind, rank);
CREATE TABLE fires (token TEXT, latent INTEGER, act REAL);
CREATE INDEX fires_token ON fires (token);
CREATE TABLE vocab (id INTEGER PRIMARY KEY, text TEXT);
CREATE VIRTUAL TABLE latent_text USING fts5 (label, explanation, fires_on, promoted, tokenize = 'porter unicode61');
"""


def normalise(token: str) -> str:
    return token.strip().lower()


def write_db(path: str | Path, stats: FeatureStats, lens: LogitLens | None, strings: dict[int, str],
             meta: dict[str, Any]) -> Path:
    """Write the database atomically from one pass's statistics and the logit lens."""
    with atomic_path(path) as tmp:
        con = sqlite3.connect(tmp)
        con.executescript(SCHEMA)
        con.executemany("INSERT INTO meta VALUES (?, ?)", [(k, json.dumps(v)) for k, v in
                                                            {**meta, "n_tokens": stats.n_tokens,
                                                             "hist_edges": HIST_EDGES.tolist()}.items()])
        con.executemany("INSERT INTO vocab VALUES (?, ?)", sorted(strings.items()))
        rows, ctx_rows, fire_rows, text_rows = [], [], [], []
        top, samples = _context_lists(stats.top), _context_lists(stats.samples)
        n_active, density, mean_active, act_max, hist = (t.tolist() for t in (
            stats.n_active, stats.density, stats.mean_active, stats.act_max, stats.hist))
        lens_lists = [t.tolist() for t in lens] if lens is not None else None
        for j in range(stats.d_sae):
            top_j = [(j, "top", r, *c) for r, c in enumerate(top[j])]
            samples_j = [(j, "quantile", r, *c) for r, c in enumerate(sorted(samples[j], key=lambda c: -c[0]))]
            ctx_rows += top_j + samples_j
            centres = [strings.get(c[4], "") for c in top_j + samples_j]
            fire_rows += [(normalise(s), j, c[3]) for s, c in zip(centres, top_j + samples_j) if s.strip()]
            promoted = suppressed = []
            if lens_lists is not None:
                up, up_v, down, down_v = (x[j] for x in lens_lists)
                promoted = [(strings[t], round(v, 3)) for t, v in zip(up, up_v)]
                suppressed = [(strings[t], round(v, 3)) for t, v in zip(down, down_v)]
            label = auto_label(centres[:len(top_j)], [p[0] for p in promoted])
            rows.append((j, n_active[j], density[j], mean_active[j], act_max[j], json.dumps(hist[j]),
                         json.dumps(promoted), json.dumps(suppressed), label, None, None))
            text_rows.append((j, label, "", " ".join(centres), " ".join(p[0] for p in promoted)))
        con.executemany("INSERT INTO latents VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)
        con.executemany("INSERT INTO contexts VALUES (?,?,?,?,?,?,?)", ctx_rows)
        con.executemany("INSERT INTO fires VALUES (?,?,?)", fire_rows)
        con.executemany("INSERT INTO latent_text (rowid, label, explanation, fires_on, promoted) VALUES (?,?,?,?,?)",
                        text_rows)
        con.commit()
        con.close()
    return Path(path)


def _context_lists(tc: TopContexts) -> list[list[tuple]]:
    """Per latent, its filled slots as (act, centre token, tokens json, acts json)."""
    where, tokens = tc.where.tolist(), tc.tokens.tolist()
    acts = tc.acts.double().numpy().round(4).tolist()  # rounded in float64 so the JSON stays short
    ctx_acts = tc.ctx_acts.double().numpy().round(3).tolist()
    mid = tc.tokens.shape[2] // 2
    return [[(acts[j][r], tokens[j][r][mid], json.dumps(tokens[j][r]), json.dumps(ctx_acts[j][r]))
             for r in range(len(where[j])) if where[j][r] >= 0] for j in range(len(where))]


F = TypeVar("F", bound=Callable[..., Any])
# What a damaged file, another SQLite file or a hand-edited table raises while it is read.
_DAMAGE = (sqlite3.DatabaseError, KeyError, TypeError, ValueError)  # ValueError: JSON columns too


def _names_damage(method: F) -> F:
    """A FeatureDB method whose damaged-database errors become a GreyglassError naming the file."""
    @functools.wraps(method)
    def read(self: "FeatureDB", *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except _DAMAGE as e:
            raise GreyglassError(f"{self.path} is damaged or not a greyglass feature database ({type(e).__name__}: "
                                 f"{e}); rebuild it with `greyglass features build`") from None
    return read  # type: ignore[return-value]


class FeatureDB:
    """Read access to a feature database; a damaged one is a GreyglassError naming its file."""

    def __init__(self, path: str | Path):
        path = Path(path)
        if path.is_dir():
            path = path / DB_NAME
        if not path.is_file():
            raise GreyglassError(f"{path} does not exist; build it with `greyglass features build`")
        self.path = path
        self._open()

    @_names_damage
    def _open(self) -> None:
        self.con = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
        self.con.row_factory = sqlite3.Row
        self.meta = {r["key"]: json.loads(r["value"]) for r in self.con.execute("SELECT * FROM meta")}
        self.d_sae = int(self.meta["d_sae"])

    def _check(self, latent: int) -> None:
        if not 0 <= latent < self.d_sae:
            raise GreyglassError(f"latent {latent} is out of range; this SAE has latents 0 to {self.d_sae - 1}")

    @_names_damage
    def vocab(self, ids: list[int]) -> dict[int, str]:
        marks = ",".join("?" * len(ids))
        return {r["id"]: r["text"] for r in self.con.execute(f"SELECT * FROM vocab WHERE id IN ({marks})", ids)}

    @_names_damage
    def latent(self, latent: int) -> dict[str, Any]:
        """Everything stored about one latent; contexts carry their tokens as text."""
        self._check(latent)
        row = dict(self.con.execute("SELECT * FROM latents WHERE latent = ?", (latent,)).fetchone())
        for key in ("hist", "promoted", "suppressed"):
            row[key] = json.loads(row[key])
        contexts = [dict(r) for r in self.con.execute(
            "SELECT * FROM contexts WHERE latent = ? ORDER BY kind DESC, rank", (latent,))]
        ids = sorted({t for c in contexts for t in json.loads(c["tokens"]) if t >= 0})
        text = self.vocab(ids)
        for c in contexts:
            ids_c = json.loads(c["tokens"])
            c["centre_index"] = sum(t >= 0 for t in ids_c[:len(ids_c) // 2])
            c["tokens"] = [(text[t], a) for t, a in zip(ids_c, json.loads(c["acts"])) if t >= 0]
        row["top"] = [c for c in contexts if c["kind"] == "top"]
        row["quantile"] = [c for c in contexts if c["kind"] == "quantile"]
        return row

    @_names_damage
    def fires_on(self, word: str, limit: int = 20) -> list[dict[str, Any]]:
        """Latents whose stored contexts centre on `word` (case-insensitive), most often first."""
        return [dict(r) for r in self.con.execute(
            "SELECT f.latent, COUNT(*) AS n, MAX(f.act) AS max_act, l.label FROM fires f "
            "JOIN latents l ON l.latent = f.latent WHERE f.token = ? GROUP BY f.latent "
            "ORDER BY n DESC, max_act DESC LIMIT ?", (normalise(word), limit))]

    @_names_damage
    def search(self, query: str, limit: int = 20) -> list[dict[str, Any]]:
        """Full-text search over labels, explanations, fired-on and promoted tokens (FTS5 syntax)."""
        try:
            return [dict(r) for r in self.con.execute(
                "SELECT t.rowid AS latent, l.label, l.density, bm25(latent_text) AS score FROM latent_text t "
                "JOIN latents l ON l.latent = t.rowid WHERE latent_text MATCH ? ORDER BY score LIMIT ?",
                (query, limit))]
        except sqlite3.OperationalError as e:
            if str(e).startswith("no such table"):
                raise GreyglassError(f"{self.path} is damaged or not a greyglass feature database ({e}); "
                                     "rebuild it with `greyglass features build`") from None
            raise GreyglassError(f"search query {query!r} is not valid full-text syntax ({e}); "
                                 "quote it, e.g. '\"money\"'") from None

    @_names_damage
    def latent_rows(self) -> list[dict[str, Any]]:
        """Every latent's density, mean and max activation and label, in latent order (for indexes and pickers)."""
        return [dict(r) for r in self.con.execute(
            "SELECT latent, density, mean_active, max_act, label FROM latents ORDER BY latent")]


def set_explanation(path: str | Path, latent: int, explanation: str, detection: float | None) -> None:
    """Store an explanation and its detection score (also in the full-text index)."""
    con = sqlite3.connect(path)
    with con:
        con.execute("UPDATE latents SET explanation = ?, detection = ? WHERE latent = ?",
                    (explanation, detection, latent))
        con.execute("UPDATE latent_text SET explanation = ? WHERE rowid = ?", (explanation, latent))
    con.close()
