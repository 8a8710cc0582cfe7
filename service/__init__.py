"""BentoML services of interaction-auditor: ``service.llm:LLM`` (the product's entry point, named in
``bentofile.yaml``) and ``service.auditor:Auditor`` (its dependency, in its own process).

The ``auditor`` library never imports this package; these modules are the only place where bentoml
and HTTP live. See ``docs/serving.md``.
"""
