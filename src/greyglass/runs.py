"""Run folders: every command writes `runs/<kind>/<name>/` with `config.json` and `results.json`.

`config.json` holds everything needed to redo the run (the command line, the component
configs, model id and weights hash, data fingerprint, seed, library versions);
`results.json` holds what it measured. Later stages and the report read only these files.
`config.json` also records the folder's `layout`, so a folder written by an older greyglass is
told apart from one that is broken: the report says which version wrote it and how to refresh it.
"""

from __future__ import annotations

import platform
import shlex
import sys
from pathlib import Path
from typing import Any

from .atomic import write_json
from .clock import folder_stamp, iso_seconds
from .errors import GreyglassError
from .json_files import read_json_object
from .records import RecordError, to_json
from .version import __version__

CONFIG = "config.json"
RESULTS = "results.json"
LAYOUT = 2
"""The run-folder layout this greyglass writes and reads: the job's typed Config under `config.json`'s
`config` and its typed Results as `results.json`. Layout 1 (before typed results) kept each command's
settings under keys of its own (`sweep`, `capture`, ...) and results.json in each command's own shape."""


class LayoutError(GreyglassError):
    """A run folder written in another layout than this greyglass reads: not broken, but not readable here."""

    def __init__(self, folder: str | Path, written: str, layout: int):
        super().__init__(f"{folder} was {written} (its {CONFIG} is of layout {layout})")
        self.written = written
        """What wrote the folder and what to do, e.g. "written by greyglass 0.1.0 (older results layout); re-run
        `greyglass probe sweep` to refresh it"."""


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


def command_line() -> list[str] | None:
    """The command line that started this process when it is the greyglass CLI (`greyglass ...`, or
    `python -m greyglass ...` as torchrun starts it); None for a library call, whose argv is someone else's."""
    if not sys.argv:
        return None
    start = Path(sys.argv[0])
    if "greyglass" in start.name:
        return sys.argv
    if start.parent.name == "greyglass" and start.name in ("__main__.py", "cli.py"):  # python -m greyglass[.cli]
        return ["greyglass", *sys.argv[1:]]
    return None


def write_config(folder: str | Path, kind: str, **parts: Any) -> dict[str, Any]:
    """Write `config.json`: the kind of run, the command line, versions, and `parts`."""
    config = {
        "kind": kind,
        "layout": LAYOUT,
        "command": command_line(),
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


def layout(meta: dict[str, Any]) -> int:
    """The layout a run folder was written in, from its `config.json`: `layout`, or for a folder written before
    greyglass recorded it, 2 when the typed Config is there under `config` and 1 when not."""
    written = meta.get("layout", 2 if "config" in meta else 1)  # 2, not LAYOUT: what such folders were
    return written if isinstance(written, int) else 0


def check_layout(folder: str | Path, meta: dict[str, Any], command: tuple[str, ...]) -> None:
    """Raise a LayoutError saying which greyglass wrote `folder` and what to do, unless this greyglass reads its
    layout; `command` is the run kind's CLI path, named when config.json does not record the command line."""
    if not isinstance(meta.get("layout", LAYOUT), int) or isinstance(meta.get("layout"), bool):
        raise RecordError(f"{Path(folder) / CONFIG}: field 'layout' must be an integer, not {meta['layout']!r}")
    written = layout(meta)
    if written == LAYOUT:
        return
    versions = meta.get("versions") if isinstance(meta.get("versions"), dict) else {}  # as written: any JSON value
    version = versions.get("greyglass", "of unknown version")
    if written > LAYOUT:
        raise LayoutError(folder, f"written by greyglass {version} (newer results layout {written}; this greyglass "
                                  f"{__version__} reads layout {LAYOUT}); read it with that version or a later one",
                          written)
    argv = meta.get("command")
    again = (shlex.join(["greyglass", *argv[1:]]) if isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv)
             else " ".join(["greyglass", *command]))
    raise LayoutError(folder, f"written by greyglass {version} (older results layout); re-run `{again}` to refresh it",
                      written)
