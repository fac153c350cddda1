"""The one list of every kind of run: each area's jobs, in CLI order (the tools are in `tools.py`).

`cli` builds its sub-commands from it, `report` and `serve` find a run folder's section
through `JOBS_BY_NAME`, and `demo` picks its jobs from it. Adding a run kind means one entry
in its area's `JOBS`; nothing else keeps a list. The tools (commands that write no run folder)
are listed apart because two of them, `report` and `serve`, read this list: in one list they
would import themselves.
"""

from __future__ import annotations

from .behaviour.jobs import JOBS as EVAL_JOBS
from .diff.jobs import GROUPS as DIFF_GROUPS
from .diff.jobs import JOBS as DIFF_JOBS
from .interop.jobs import GROUPS as INTEROP_GROUPS
from .job import Job
from .latents.jobs import GROUPS as FEATURE_GROUPS
from .latents.jobs import JOBS as FEATURE_JOBS
from .organism.jobs import GROUPS as ORGANISM_GROUPS
from .organism.jobs import JOBS as ORGANISM_JOBS
from .probes.jobs import GROUPS as PROBE_GROUPS
from .probes.jobs import JOBS as PROBE_JOBS
from .redteam.jobs import JOBS as REDTEAM_JOBS
from .sae.jobs import GROUPS as SAE_GROUPS
from .sae.jobs import JOBS as SAE_JOBS
from .steer.jobs import JOBS as STEER_JOBS
from .store.jobs import JOBS as STORE_JOBS
from .testbed.jobs import JOBS as TESTBED_JOBS
from .tom.jobs import JOBS as TOM_JOBS
from .trend.jobs import JOBS as TREND_JOBS

JOBS: tuple[Job, ...] = (*STORE_JOBS, *SAE_JOBS, *FEATURE_JOBS, *PROBE_JOBS, *STEER_JOBS, *EVAL_JOBS, *ORGANISM_JOBS,
                          *TOM_JOBS, *DIFF_JOBS, *TREND_JOBS, *REDTEAM_JOBS, *TESTBED_JOBS)
GROUPS: dict[str, str] = {**SAE_GROUPS, **FEATURE_GROUPS, **PROBE_GROUPS, **ORGANISM_GROUPS, **INTEROP_GROUPS,
                          **DIFF_GROUPS}
"""Help lines of the command groups (`greyglass probe ...`)."""
JOBS_BY_NAME: dict[str, Job] = {job.name: job for job in JOBS}
