"""Compliance reports: the audit store of a period as one schema, rendered as JSON or HTML.

Owns the report's schema (``schema``), how it is gathered from stored records (``build``) and how it
is drawn (``html``, ``charts``). Imports the runtime's records and store, and ``metrics`` for the
window overfitting fit; never torch or the solver: a report is a pure function of stored records.
"""

from auditor.reports.build import build_report, parse_time, render_json
from auditor.reports.html import render_html
from auditor.reports.schema import METHODS, REPORT_SCHEMA_VERSION, ReportModel

__all__ = ["build_report", "render_json", "render_html", "parse_time", "ReportModel", "METHODS", "REPORT_SCHEMA_VERSION"]
