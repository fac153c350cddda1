"""Build the evidence report from run folders.

`build_report(paths)` finds run folders (a folder with `config.json` and `results.json`, or
any folder containing such folders), turns each into its job's `Section` (the job named by
`config.json`'s `kind`, read back as typed Config and Results), and renders one self-contained
HTML page. Sections read only the run folder.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..atomic import write_text
from ..errors import GreyglassError
from ..job import typed_run
from ..jobs import JOBS_BY_NAME
from ..records import RecordError
from ..runs import CONFIG, RESULTS, LayoutError, read_run
from .page import render_page
from .section import Section, provenance

def find_runs(paths: Iterable[str | Path]) -> list[Path]:
    """Run folders named directly or found below the given folders, in a stable order."""
    found: list[Path] = []
    for p in map(Path, paths):
        if not p.exists():
            raise GreyglassError(f"{p} does not exist; give run folders or a folder that contains them")
        if (p / CONFIG).exists():
            found.append(p)
        else:
            found += sorted((c.parent for c in p.rglob(CONFIG) if (c.parent / RESULTS).exists()), key=_created)
    if not found:
        raise GreyglassError(f"no run folders (with {CONFIG} and {RESULTS}) under {', '.join(map(str, paths))}")
    return list(dict.fromkeys(found))


def _created(folder: Path) -> tuple[str, str]:
    """Runs found under a folder are shown in the order they were made (a pipeline's order)."""
    try:
        created = json.loads((folder / CONFIG).read_text()).get("created", "")
    except (json.JSONDecodeError, OSError):
        created = ""
    return (str(created), str(folder))


def section_for(folder: Path, files: tuple[dict[str, Any], dict[str, Any]] | None = None) -> Section:
    """The section for one run folder, by its job (`files`: its config.json and results.json, when already read).
    A folder an older greyglass wrote gets a section saying so and how to refresh it; one whose files do not fit
    its job's Results otherwise (an edit by hand) a section saying what does not fit."""
    config, results = files if files is not None else read_run(folder)
    kind = config.get("kind", "unknown")
    if not isinstance(kind, str) or kind not in JOBS_BY_NAME:  # a hand-edited kind may be any JSON value
        return generic_section(config, results, folder)
    try:
        return typed_run(JOBS_BY_NAME[kind], folder, config, results).section()
    except LayoutError as e:
        print(f"greyglass report: warning: {e}", file=sys.stderr)
        return other_layout_section(config, folder, e.written)
    except RecordError as e:
        print(f"greyglass report: warning: {folder} could not be read as a '{kind}' run ({e})", file=sys.stderr)
        return unreadable_section(config, folder, str(e))


def build_report(paths: Iterable[str | Path], out: str | Path, title: str | None = None) -> Path:
    secs = [section_for(f) for f in find_runs(paths)]
    html = render_page(secs, title or "What we found inside the model")
    write_text(out, html)
    return Path(out)


def unreadable_section(config: dict[str, Any], folder: Path, problem: str) -> Section:
    kind = config.get("kind", "unknown")
    return Section(
        kind=kind,
        title=f"Run of kind '{kind}' (could not be read)",
        headline="This run's files do not hold what its report section needs, so nothing is claimed from it.",
        numbers=[("problem", problem)],
        shows=["Nothing."],
        does_not_show=["Anything: the run may come from another greyglass version or have been edited by hand."],
        provenance=provenance(config, str(folder)),
    )


def other_layout_section(config: dict[str, Any], folder: Path, written: str) -> Section:
    """A run this greyglass does not read because another version wrote it: which one, and how to refresh it."""
    kind = config.get("kind", "unknown")
    return Section(
        kind=kind,
        title=f"Run of kind '{kind}' (written by another greyglass version)",
        headline=f"This run was {written}. Nothing is claimed from it here.",
        numbers=[],
        shows=["Nothing."],
        does_not_show=["Anything: its results are not read until the run is refreshed."],
        provenance=provenance(config, str(folder)),
    )


def generic_section(config: dict[str, Any], results: dict[str, Any], folder: Path) -> Section:
    kind = config.get("kind", "unknown")
    numbers = [(k, f"{v:.4g}" if isinstance(v, float) else str(v)) for k, v in results.items()
               if isinstance(v, (int, float, str)) and not isinstance(v, bool)]
    return Section(
        kind=kind,
        title=f"Run of kind '{kind}'",
        headline=f"The numbers below were measured; greyglass has no plain-language reading for '{kind}' runs yet.",
        numbers=numbers[:20],
        shows=["The raw figures the run recorded."],
        does_not_show=["An interpretation: read the run's documentation before drawing conclusions."],
        provenance=provenance(config, str(folder)),
    )
