"""The evidence report: `Section` (section.py), the page (page.py), and `build_report` (build.py),
which turns run folders into one self-contained HTML page. Nothing is re-exported here, so the
jobs can import `report.section` without loading the report builder."""
