"""The result of an interaction extraction: AND and OR terms with their optimality certificate.

Kept free of the solver so that records, metrics, reports and the CLI can load and use results
(e.g. from JSON) without solving anything. Vectors are numpy float64 of length 2^n in binary order
(bit i of an index = player i). Entry 0 of both term vectors is 0: the empty set carries no
interaction (v(empty) = 0 after normalisation and q(empty) = 0, see ``auditor.engine.extraction``).
Order-1 OR terms fire exactly when order-1 AND terms do, so they are merged into AND: the OR
vector is 0 on singletons. The game's own exact values (``shapley``, ``to_shapiq``) come from the
stored values through ``auditor.engine.exact`` (torch, imported only when asked), not from the fit.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

InteractionKind = Literal["and", "or"]
SolveMode = Literal["and-or", "and"]

DEFAULT_SALIENT_THRESHOLD = 0.05


def _popcount(mask: int) -> int:
    return int(mask).bit_count()


def players_of(mask: int) -> tuple[int, ...]:
    """Player indices in a mask, ascending."""
    return tuple(i for i in range(int(mask).bit_length()) if (mask >> i) & 1)


@dataclass(frozen=True)
class SalientTerm:
    """One salient interaction: which players, AND or OR, and its signed value."""

    kind: InteractionKind
    mask: int
    players: tuple[int, ...]
    value: float

    @property
    def order(self) -> int:
        return len(self.players)

    @property
    def strength(self) -> float:
        return abs(self.value)

    @property
    def sign(self) -> int:
        return 1 if self.value > 0 else -1

    def label(self, names: Sequence[str] | None = None) -> str:
        """Readable form such as ``AND(guilty, knife)``."""
        words = [names[i] if names else f"x{i}" for i in self.players]
        return f"{self.kind.upper()}({', '.join(words)})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "mask": self.mask,
            "players": list(self.players),
            "order": self.order,
            "value": self.value,
        }


@dataclass
class Interactions:
    """AND-OR interactions of one game, their q correction, and the LP certificate.

    ``objective`` is ||I_and||_1 + ||I_or||_1 of the returned terms (a primal feasible point) and
    ``dual_bound`` a lower bound on the optimum from a dual feasible point, so
    ``gap = (objective - dual_bound) / objective`` certifies how far the result can be from the
    optimum. ``values`` are the game's outputs with v(empty) subtracted. ``extra["time_limit_hit"]``
    is true when the solver's time budget stopped it before ``tol``: the point is still feasible and
    ``gap`` still a proved bound, only a looser one.
    """

    n: int
    values: np.ndarray
    and_terms: np.ndarray
    or_terms: np.ndarray
    q: np.ndarray
    tau: float
    qthres: float
    mode: SolveMode
    objective: float
    dual_bound: float
    gap: float
    iterations: int
    solve_seconds: float = 0.0
    names: list[str] | None = None
    offset: float = 0.0  # v(empty) before normalisation
    extra: dict[str, Any] = field(default_factory=dict)

    # --- derived figures -------------------------------------------------------------------------

    @property
    def normaliser(self) -> float:
        """|v(N) - v(empty)|: the scale that order profiles and q are reported relative to."""
        return float(abs(self.values[-1] - self.values[0]))

    def max_strength(self) -> float:
        """Largest |I(S)| over non-empty AND and OR terms (the salience reference)."""
        strongest = max(np.abs(self.and_terms[1:]).max(initial=0.0), np.abs(self.or_terms[1:]).max(initial=0.0))
        return float(strongest)

    def salient(self, threshold: float = DEFAULT_SALIENT_THRESHOLD) -> list[SalientTerm]:
        """Terms with |I(S)| >= threshold * max_strength, strongest first."""
        reference = self.max_strength()
        if reference <= 0.0:
            return []
        cutoff = threshold * reference
        terms: list[SalientTerm] = []
        for kind, vector in (("and", self.and_terms), ("or", self.or_terms)):
            for mask in np.flatnonzero(np.abs(vector) >= cutoff):
                if mask == 0:
                    continue
                terms.append(SalientTerm(kind, int(mask), players_of(int(mask)), float(vector[mask])))
        terms.sort(key=lambda term: (-term.strength, term.kind, term.mask))
        return terms

    def shapley(self) -> np.ndarray:
        """Exact Shapley values of the game v itself: they sum to v(N) - v(empty) to rounding.

        Computed from the stored values in O(n 2^n) (``auditor.engine.exact.shapley_values``), never
        from the fitted terms: those describe v + q, whose Shapley values miss efficiency by up to
        qthres |v(N) - v(empty)| (see :meth:`shapley_of_fit`). Equal to sum over S containing i of
        m(S) / |S|, m the exact Möbius transform of v (science.md section 2).
        """
        from auditor.engine.exact import shapley_values  # torch: only when asked for

        return shapley_values(self.values)

    def shapley_of_fit(self) -> np.ndarray:
        """Shapley values of the fit v + q: each AND or OR term is shared equally by its players.

        They sum to (v + q)(N), not to v(N): use :meth:`shapley` for the game's own values. Kept
        because they are the attribution that the sparse terms themselves imply. An OR term
        [S meets T] is a symmetric game worth 1 on N and 0 on the empty set, so its Shapley value is
        1/|S| per member, exactly as for an AND (Harsanyi) term.
        """
        phi = np.zeros(self.n)
        for vector in (self.and_terms, self.or_terms):
            for mask in np.flatnonzero(vector):
                if mask == 0:
                    continue
                members = players_of(int(mask))
                phi[list(members)] += vector[mask] / len(members)
        return phi

    def to_shapiq(self, index: str = "Moebius", order: int | None = None) -> Any:
        """The exact ``index`` of the game as shapiq's ``InteractionValues``, for shapiq's plots.

        Computed from the stored values plus ``offset`` (the caller's game, v(empty) included, which
        shapiq shows as the baseline), never from the fitted terms. ``index`` is one of shapiq's names
        in ``auditor.engine.exact.INDICES`` (Moebius, Co-Moebius, SV, BV, SII, BII, STII, FSII; any
        case); ``order`` defaults as in shapiq's ExactComputer (n, or 1 for SV and BV). Sets larger
        than ``order`` are left out. shapiq is an optional dependency, imported here only.
        """
        try:
            from shapiq import InteractionValues
        except ImportError as error:
            raise ImportError(
                "Interactions.to_shapiq needs shapiq: pip install interaction-auditor[shapiq]"
            ) from error
        from itertools import combinations

        from auditor.engine.exact import INDICES, canonical_index, interaction_index

        name = canonical_index(index)
        game = self.values + self.offset
        vector = interaction_index(game, name, order=order)
        k = (INDICES[name] or self.n) if order is None else int(order)
        # shapiq's own layout: sets by size, then lexicographically
        sets = [subset for size in range(k + 1) for subset in combinations(range(self.n), size)]
        values = np.array([vector[sum(1 << i for i in subset)] for subset in sets])
        return InteractionValues(
            values=values,
            index=name,
            max_order=k,
            min_order=0,
            n_players=self.n,
            interaction_lookup={subset: position for position, subset in enumerate(sets)},
            estimated=False,
            baseline_value=float(game[0]),
        )

    def reconstruct(self, masks: Iterable[int] | np.ndarray | None = None) -> np.ndarray:
        """Universal matching: sum_{empty != S subset T} I_and(S) + sum_{S meets T} I_or(S).

        Equals v(T) + q(T) for every T. With ``masks`` None, all 2^n states in binary order.
        """
        states = np.arange(1 << self.n) if masks is None else np.asarray(list(masks) if not isinstance(masks, np.ndarray) else masks)
        and_support = np.flatnonzero(self.and_terms)
        or_support = np.flatnonzero(self.or_terms)
        states = states.astype(np.int64)[:, None]
        and_part = ((states & and_support) == and_support) @ self.and_terms[and_support]
        or_part = ((states & or_support) != 0) @ self.or_terms[or_support]
        return and_part + or_part

    # --- serialisation ---------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "names": self.names,
            "mode": self.mode,
            "qthres": self.qthres,
            "tau": self.tau,
            "offset": self.offset,
            "objective": self.objective,
            "dual_bound": self.dual_bound,
            "gap": self.gap,
            "iterations": self.iterations,
            "solve_seconds": self.solve_seconds,
            "values": self.values.tolist(),
            "and_terms": self.and_terms.tolist(),
            "or_terms": self.or_terms.tolist(),
            "q": self.q.tolist(),
            "extra": self.extra,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Interactions:
        arrays = {key: np.asarray(data[key], dtype=np.float64) for key in ("values", "and_terms", "or_terms", "q")}
        return cls(
            n=int(data["n"]),
            names=data.get("names"),
            mode=data["mode"],
            qthres=float(data["qthres"]),
            tau=float(data["tau"]),
            offset=float(data.get("offset", 0.0)),
            objective=float(data["objective"]),
            dual_bound=float(data["dual_bound"]),
            gap=float(data["gap"]),
            iterations=int(data["iterations"]),
            solve_seconds=float(data.get("solve_seconds", 0.0)),
            extra=dict(data.get("extra", {})),
            **arrays,
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> Interactions:
        return cls.from_dict(json.loads(text))
