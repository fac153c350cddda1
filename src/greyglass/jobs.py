"""The one list of everything greyglass can run: each area's jobs and tools, in CLI order.

`cli` builds its sub-commands from it, `report` and `serve` find a run folder's section
through `JOBS_BY_NAME`, and `demo` picks its jobs from it. Adding a run kind means one entry
in its area's `JOBS`; nothing else keeps a list.
"""

from __future__ import annotations

from .evals.jobs import JOBS as EVAL_JOBS
from .evals.jobs import TOOLS as EVAL_TOOLS
from .features.jobs import GROUPS as FEATURE_GROUPS
from .features.jobs import JOBS as FEATURE_JOBS
from .features.jobs import TOOLS as FEATURE_TOOLS
from .job import Job, Tool
from .organism.jobs import GROUPS as ORGANISM_GROUPS
from .organism.jobs import JOBS as ORGANISM_JOBS
from .probes.jobs import GROUPS as PROBE_GROUPS
from .probes.jobs import JOBS as PROBE_JOBS
from .sae.jobs import GROUPS as SAE_GROUPS
from .sae.jobs import JOBS as SAE_JOBS
from .steer.jobs import JOBS as STEER_JOBS
from .store.jobs import JOBS as STORE_JOBS
from .store.jobs import TOOLS as STORE_TOOLS
from .tools import TOOLS as GENERAL_TOOLS

JOBS: tuple[Job, ...] = (*STORE_JOBS, *SAE_JOBS, *FEATURE_JOBS, *PROBE_JOBS, *STEER_JOBS, *EVAL_JOBS, *ORGANISM_JOBS)
TOOLS: tuple[Tool, ...] = (*STORE_TOOLS, *FEATURE_TOOLS, *EVAL_TOOLS, *GENERAL_TOOLS)
GROUPS: dict[str, str] = {**SAE_GROUPS, **FEATURE_GROUPS, **PROBE_GROUPS, **ORGANISM_GROUPS}
"""Help lines of the command groups (`greyglass probe ...`)."""
JOBS_BY_NAME: dict[str, Job] = {job.name: job for job in JOBS}
