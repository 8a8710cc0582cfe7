"""BentoML services of interaction-auditor: ``service.llm:LLM`` (the product's entry point, named in
``bentofile.yaml``) and ``service.auditor:Auditor`` (its dependency, in its own process).

The ``auditor`` library never imports this package; these modules are the only place where bentoml
and HTTP live. See ``docs/serving.md``.

What the services import from the library: the public API (``from auditor import ...``), plus four
documented pieces the public API does not need to carry: ``auditor.runtime.settings.unknown_env_vars``
(a typo in an ``AUDITOR_*`` variable is logged at start), ``auditor.game.loading.context_limit``
(requests are checked against the model's context), ``auditor.game.players`` (audit spans are
located in the rendered prompt before generating, so a bad span is a 400) and
``auditor.reports.parse_time`` (the ``since``/``until`` query parameters). Never the engine, metrics,
testbed or CLI: an import-linter contract in ``pyproject.toml`` holds that.
"""
