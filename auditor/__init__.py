"""interaction-auditor: AND-OR interactions of a served LLM's answers, as production metrics.

The library is pure Python + torch and never imports bentoml: the services in ``service/`` call it,
it never calls them. See ``docs/contracts.md`` for the module map and the data each module hands on.
"""

__version__ = "0.1.0"
