"""What the interactions say: per-audit metrics, window and overfitting scores, fragility, comparison.

Imports ``engine`` (the result type) and, where it audits models itself (``compare``, ``fragility``),
``game`` and ``audit``. Definitions: science.md section 3; map: docs/contracts.md.
"""
