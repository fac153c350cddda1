"""Start-up time of `greyglass --help` against importing torch and transformers, in fresh processes.

Prints JSON. Each figure is the median wall time of `repeats` fresh Python processes, run
alternately so both see the same machine load:
  (a) `python -c "import torch, transformers"`: what a command pays once it loads a model,
  (b) `python -m greyglass.cli --help`, for the source tree given (default: this checkout),
and the ratio b/a (below 1: `--help` no longer waits for torch). `--baseline-src` times (b)
for a second tree too (e.g. a checkout of an older commit) for a before/after figure.

    python bench/cli_startup.py [--repeats 5] [--baseline-src /path/to/old/src]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def seconds(argv: list[str], src: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(src)}
    start = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--baseline-src", type=Path, help="another source tree whose --help to time as well")
    args = ap.parse_args()
    runs: dict[str, list[float]] = {"import_torch_transformers": [], "greyglass_help": [], "baseline_help": []}
    for _ in range(args.repeats):
        runs["import_torch_transformers"].append(seconds([sys.executable, "-c", "import torch, transformers"], SRC))
        runs["greyglass_help"].append(seconds([sys.executable, "-m", "greyglass.cli", "--help"], SRC))
        if args.baseline_src:
            runs["baseline_help"].append(seconds([sys.executable, "-m", "greyglass.cli", "--help"], args.baseline_src))
    median = {k: round(statistics.median(v), 3) for k, v in runs.items() if v}
    out = {"machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
           "repeats": args.repeats, "median_s": median,
           "ratio_help_over_import_torch": round(median["greyglass_help"] / median["import_torch_transformers"], 3)}
    if args.baseline_src:
        out["ratio_help_over_baseline_help"] = round(median["greyglass_help"] / median["baseline_help"], 3)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
