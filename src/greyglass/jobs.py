"""The one list of everything greyglass can run: each area's jobs and tools, in CLI order.

`cli` builds its sub-commands from it, `report` and `serve` find a run folder's section
through `JOBS_BY_NAME`, and `demo` picks its jobs from it. Adding a run kind means one entry
in its area's `JOBS`; nothing else keeps a list.
"""

from __future__ import annotations

from .features.jobs import GROUPS as FEATURE_GROUPS
from .features.jobs import JOBS as FEATURE_JOBS
from .features.jobs import TOOLS as FEATURE_TOOLS
from .evals.jobs import JOBS as EVAL_JOBS
from .evals.jobs import TOOLS as EVAL_TOOLS
from .job import Job, Tool
from .probes.jobs import GROUPS as PROBE_GROUPS
from .probes.jobs import JOBS as PROBE_JOBS
from .steer.jobs import JOBS as STEER_JOBS

JOBS: tuple[Job, ...] = (*FEATURE_JOBS, *PROBE_JOBS, *STEER_JOBS, *EVAL_JOBS)
TOOLS: tuple[Tool, ...] = (*FEATURE_TOOLS, *EVAL_TOOLS)
GROUPS: dict[str, str] = {**FEATURE_GROUPS, **PROBE_GROUPS}
"""Help lines of the command groups (`greyglass probe ...`)."""
JOBS_BY_NAME: dict[str, Job] = {job.name: job for job in JOBS}
