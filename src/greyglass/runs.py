"""Run folders: every command writes `runs/<kind>/<name>/` with `config.json` and `results.json`.

`config.json` holds everything needed to redo the run (the command line, the component
configs, model id and weights hash, data fingerprint, seed, library versions);
`results.json` holds what it measured. Later stages and the report read only these files.
"""

from __future__ import annotations

import datetime as dt
import json
import platform
import sys
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

from .atomic import write_json
from .errors import GreyglassError
from .version import __version__

CONFIG = "config.json"
RESULTS = "results.json"


def default_run_dir(kind: str, name: str | None = None, root: str | Path = "runs") -> Path:
    """`runs/<kind>/<name>`, the name defaulting to the current UTC time."""
    stamp = name or dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    return Path(root) / kind / stamp


def versions() -> dict[str, str]:
    import torch
    import transformers

    return {
        "greyglass": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }


def write_config(folder: str | Path, kind: str, **parts: Any) -> dict[str, Any]:
    """Write `config.json`: the kind of run, the command line, versions, and `parts`."""
    config = {
        "kind": kind,
        "command": sys.argv if sys.argv and "greyglass" in Path(sys.argv[0]).name else None,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": versions(),
        **{k: plain(v) for k, v in parts.items()},
    }
    write_json(Path(folder) / CONFIG, config)
    return config


def plain(value: Any) -> Any:
    """Dataclasses (also inside lists and dicts) as dicts, so config.json holds fields, not reprs."""
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def write_results(folder: str | Path, results: dict[str, Any]) -> None:
    write_json(Path(folder) / RESULTS, results)


def read_run(folder: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(config, results) of a run folder, with errors that name the file."""
    out = []
    for name in (CONFIG, RESULTS):
        path = Path(folder) / name
        try:
            out.append(json.loads(path.read_text()))
        except FileNotFoundError:
            raise GreyglassError(f"{folder} is not a finished run folder: {name} is missing") from None
        except json.JSONDecodeError as e:
            raise GreyglassError(f"{path}: not valid JSON (line {e.lineno}: {e.msg})") from None
    return out[0], out[1]
