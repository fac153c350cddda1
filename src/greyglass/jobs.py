"""The one list of everything greyglass can run: each area's jobs and tools, in CLI order.

`cli` builds its sub-commands from it, `report` and `serve` find a run folder's section
through `JOBS_BY_NAME`, and `demo` picks its jobs from it. Adding a run kind means one entry
in its area's `JOBS`; nothing else keeps a list.
"""

from __future__ import annotations

from .job import Job, Tool
from .probes.jobs import GROUPS as PROBE_GROUPS
from .probes.jobs import JOBS as PROBE_JOBS
from .sae.jobs import GROUPS as SAE_GROUPS
from .sae.jobs import JOBS as SAE_JOBS

JOBS: tuple[Job, ...] = (*PROBE_JOBS, *SAE_JOBS)
TOOLS: tuple[Tool, ...] = ()
GROUPS: dict[str, str] = {**PROBE_GROUPS, **SAE_GROUPS}
"""Help lines of the command groups (`greyglass probe ...`)."""
JOBS_BY_NAME: dict[str, Job] = {job.name: job for job in JOBS}
