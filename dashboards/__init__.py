"""Monitoring as code for interaction-auditor: the Grafana dashboard builder and Prometheus rules.

``python -m dashboards.build`` regenerates ``dashboards/grafana/interaction-auditor.json``; the
rules live in ``dashboards/prometheus/``. See ``docs/monitoring.md``.
"""
