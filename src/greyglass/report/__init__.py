"""The evidence report: run folders in, one self-contained HTML page out."""

from .build import BUILDERS, build_report, builder, find_runs
from .section import Section, fmt

__all__ = ["BUILDERS", "Section", "build_report", "builder", "find_runs", "fmt"]
