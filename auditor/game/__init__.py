"""The causal-LM game: a prompt's players, the model's answer, and v(T) on all 2^n masked prompts.

Owns players (``players``), model loading (``loading``), the answer (``answer``), its value under
masking (``value``) and the masked forward passes (``planning``, ``trie``, ``scoring``). Imports
nothing else of ``auditor``: the engine solves what the game produces (see ``auditor.audit``).
"""
