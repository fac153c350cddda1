"""What the browser can show: run folders, feature databases and saved directions under RUNS_DIR.

Every URL names a run by its id, the folder's path relative to RUNS_DIR (`sae/20260101-1200`).
An id is looked up in the scanned catalog and never joined onto a path, so `../` in a URL
cannot reach a file outside RUNS_DIR: it is simply an unknown run. The scan is cached for a
few seconds, so a page costs a dictionary lookup, not a walk of the disk. What a run found is
its report section (`Catalog.section`), the same object the report and the terminal show, kept
until the next scan.
"""

from __future__ import annotations

import itertools

import threading
import time
from pathlib import Path
from typing import Any, NamedTuple

from ..directions import META as DIRECTION_META
from ..data.files import jsonl_objects
from ..errors import GreyglassError
from ..latents.db import DB_NAME
from ..report.build import section_for, unreadable_section
from ..report.section import Section
from ..runs import CONFIG, RESULTS, read_run

ITEMS = "items.jsonl"
ITEM_FILES = (ITEMS, "cases.jsonl")
"""Per-item rows a run may hold: an eval's items, a red-teaming run's cases (one row per answer, with its verdict)."""


class Run(NamedTuple):
    id: str
    folder: Path
    config: dict[str, Any]
    results: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.config.get("kind", "unknown"))

    @property
    def model(self) -> str:
        model = self.config.get("model") or {}
        return str(model.get("name") or model.get("spec") or "") if isinstance(model, dict) else str(model)

    @property
    def model_spec(self) -> str | None:
        model = self.config.get("model") or {}
        spec = model.get("spec") if isinstance(model, dict) else None
        return spec if isinstance(spec, str) else None

    @property
    def date(self) -> str:
        """When the run was made, `2026-01-31 12:00` (UTC), from config.json's `created`."""
        created = str(self.config.get("created") or "")
        return created[:16].replace("T", " ") + (" UTC" if created.endswith("+00:00") else "")

    @property
    def has_features(self) -> bool:
        return (self.folder / DB_NAME).is_file()

    @property
    def has_items(self) -> bool:
        return self.items_file is not None

    @property
    def items_file(self) -> Path | None:
        """The run's per-item rows (`ITEM_FILES`), or None."""
        return next((self.folder / f for f in ITEM_FILES if (self.folder / f).is_file()), None)


class Catalog:
    """The runs, feature databases and directions found under one folder, rescanned every `ttl` seconds."""

    def __init__(self, root: str | Path, ttl: float = 5.0):
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise GreyglassError(f"{root} is not a folder; give the folder that holds your run folders (e.g. runs)")
        self.ttl = ttl
        self._lock = threading.Lock()
        self._stamp = -float("inf")
        self._runs: dict[str, Run] = {}
        self._sections: dict[str, Section] = {}
        self._directions: dict[str, Path] = {}

    def _scan(self) -> None:
        with self._lock:
            if time.monotonic() - self._stamp < self.ttl:
                return
            runs: dict[str, Run] = {}
            for cfg in sorted(self.root.rglob(CONFIG)):
                folder = cfg.parent
                if not (folder / RESULTS).is_file():
                    continue
                try:
                    config, results = read_run(folder)
                except GreyglassError:
                    continue  # a half-written or foreign folder is not a run to show
                if isinstance(config, dict) and isinstance(results, dict):
                    rid = folder.relative_to(self.root).as_posix()
                    runs[rid] = Run(rid, folder, config, results)
            self._runs = runs
            self._sections = {}
            self._directions = {p.parent.relative_to(self.root).as_posix(): p.parent
                                for p in sorted(self.root.rglob(DIRECTION_META))}
            self._stamp = time.monotonic()

    def runs(self) -> list[Run]:
        self._scan()
        return sorted(self._runs.values(), key=lambda r: (str(r.config.get("created") or ""), r.id), reverse=True)

    def run(self, rid: str) -> Run:
        self._scan()
        if rid not in self._runs:
            raise KeyError(f"no run {rid!r} under {self.root.name}; open the run list to see the runs there")
        return self._runs[rid]

    def section(self, run: Run) -> Section:
        """The run's report section, from the files the scan read; a run whose section cannot be made from them
        gets a section saying what went wrong (a page never fails because one run folder is odd)."""
        if run.id not in self._sections:
            try:
                section = section_for(run.folder, (run.config, run.results))
            except (GreyglassError, KeyError, TypeError, ValueError) as e:
                section = unreadable_section(run.config, run.folder, str(e))
            self._sections[run.id] = section
        return self._sections[run.id]

    def feature_runs(self) -> list[Run]:
        return [r for r in self.runs() if r.has_features]

    def directions(self) -> dict[str, Path]:
        self._scan()
        return dict(self._directions)


def read_items(run: Run, limit: int = 100_000) -> list[dict[str, Any]]:
    """The eval items (or red-teaming cases) of a run, one JSON object per line; errors name the file and line."""
    return [item for _, item in itertools.islice(jsonl_objects(run.items_file or run.folder / ITEMS), limit)]
