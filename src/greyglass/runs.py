"""Run folders: every command writes `runs/<kind>/<name>/` with `config.json` and `results.json`.

`config.json` holds everything needed to redo the run (the command line, the component
configs, model id and weights hash, data fingerprint, seed, library versions);
`results.json` holds what it measured. Later stages and the report read only these files.
"""

from __future__ import annotations

import platform
import sys
from pathlib import Path
from typing import Any

from .atomic import write_json
from .clock import folder_stamp, iso_seconds
from .errors import GreyglassError
from .json_files import read_json_object
from .records import to_json
from .version import __version__

CONFIG = "config.json"
RESULTS = "results.json"


def default_run_dir(kind: str, name: str | None = None, root: str | Path = "runs") -> Path:
    """`runs/<kind>/<name>`, the name defaulting to the current UTC time."""
    return Path(root) / kind / (name or folder_stamp())


def versions() -> dict[str, str]:
    import torch  # only when a run is written: the CLI's start-up must not pay for it
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
        "created": iso_seconds(),
        "versions": versions(),
        **{k: to_json(v) for k, v in parts.items()},
    }
    write_json(Path(folder) / CONFIG, config)
    return config


def write_results(folder: str | Path, results: Any) -> None:
    """Write `results.json` from a job's Results record (or a plain dict)."""
    write_json(Path(folder) / RESULTS, to_json(results))


def read_run(folder: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(config, results) of a run folder, with errors that name the file."""
    out = []
    for name in (CONFIG, RESULTS):
        path = Path(folder) / name
        if not path.is_file():
            raise GreyglassError(f"{folder} is not a finished run folder: {name} is missing")
        out.append(read_json_object(path))
    return out[0], out[1]
