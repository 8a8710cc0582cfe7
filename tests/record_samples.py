"""Audit records as the worker writes them (minimal content), shared by the route, query and CLI tests."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from auditor.runtime.records import AuditRecord

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)
TOKEN = "route-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PROMPT = "Alice hit Bob; Carol watched. What is Alice charged with?"


def sample_record(i: int, model_id: str, flagged: bool) -> AuditRecord:
    """A successful audit record ``i`` minutes after T0 (content as the worker writes it, minimal)."""
    players = [{"index": 0, "text": "Alice", "label": "forbidden", "group": None, "char_start": 0, "char_end": 5},
               {"index": 1, "text": "hit", "label": "relevant", "group": None, "char_start": 6, "char_end": 9}]
    when = T0 + timedelta(minutes=i)
    return AuditRecord(
        request_id=f"req-{i}", created_at=when, started_at=when, finished_at=when + timedelta(seconds=2),
        model_id=model_id, model_revision="rev1", auditor_version="0.1.0",
        settings={"n_players": 2, "qthres": 0.04, "overfitting_threshold": 0.5, "misattribution_threshold": 0.3},
        sampling_reason="base_rate", sampling_probability=0.1, prompt=PROMPT, answer="assault", players=players,
        salient=[{"kind": "and", "players": [0, 1], "order": 2, "value": 0.75}],
        metrics={"overfitting": 0.1, "misattribution": 0.6 if flagged else 0.1, "sparsity": 3},
        flags=["misattribution"] if flagged else [],
        cost={"forward_passes": 4, "tokens_computed": 40, "seconds": 0.5, "device": "cpu"},
    )
