"""An independent re-implementation of the public reference recipe for the AND-OR split (for comparison).

Written from the recipe's description (science.md section 2, issue 2), not from its code:

- dense 2^n x 2^n matrices: ``M_and`` (v -> Harsanyi AND dividends; row S, column L holds
  (-1)^{|S|-|L|} [L subset S]) and ``M_or`` (row S non-empty: I_or(S) = -sum_{L subset S}
  (-1)^{|S|-|L|} v(N \\ L); row empty: v(empty) itself);
- parameters p (the g of science.md) and q, both starting at 0, with
  v_and = (v + q)/2 + p and v_or = (v + q)/2 - p, and q clipped to [-tau, tau] before every step,
  tau = qthres |v(N) - v(empty)|;
- loss ||M_and v_and||_1 + ||M_or v_or||_1 over *all* entries, the empty set included (the reference
  normalises nothing: the game is used as given, v(empty) included);
- plain SGD with momentum 0.9 (no dampening, no Nesterov), learning rate log-spaced from lr (1e-5) to
  lr / 10 (1e-6) over ``steps`` (20 000) steps; the last iterate is returned (no step after the last
  loss evaluation).

The gradient is written out by hand (the subgradient autograd takes of |x| is sign(x), 0 at 0):
d/dp = M_and^T s_and - M_or^T s_or and d/dq = (M_and^T s_and + M_or^T s_or) / 2 with s = sign(I).
A step therefore costs two dense matrix-vector products forward and two transposed ones backward,
O(4^n) each: the same work as the autograd version, without its bookkeeping. The reference code
keeps its matrices and values in float32; so does this one by default.

``run_steps`` < ``steps`` runs only the first ``run_steps`` steps of the same ``steps``-long schedule
(the iterate is where the full recipe would be at that step), and the result carries the measured
time per step so that a caller can extrapolate the time of the full recipe (and must say so).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["ReferenceResult", "and_matrix", "or_matrix", "reference_split", "reference_terms"]


def and_matrix(n: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Dense v -> I_and matrix: the n-fold Kronecker power of [[1, 0], [-1, 1]] (binary order)."""
    factor = torch.tensor([[1.0, 0.0], [-1.0, 1.0]], dtype=dtype)
    matrix = torch.ones(1, 1, dtype=dtype)
    for _ in range(n):
        matrix = torch.kron(factor, matrix)
    return matrix


def or_matrix(n: int, dtype: torch.dtype = torch.float32, and_mat: torch.Tensor | None = None) -> torch.Tensor:
    """Dense v -> I_or matrix: -M_and composed with the complement T -> N \\ T; row 0 picks v(empty)."""
    base = and_matrix(n, dtype) if and_mat is None else and_mat
    # column j of v sits at position N \ j after complementing: reverse the columns (binary order)
    matrix = -torch.flip(base, dims=(1,))
    matrix[0].zero_()
    matrix[0, 0] = 1.0
    return matrix


@dataclass
class ReferenceResult:
    p: np.ndarray  # float64 copies of the final parameters
    q: np.ndarray
    tau: float
    loss: float  # the recipe's own loss at the returned iterate (all entries, empty set included)
    steps: int  # length of the schedule (the recipe: 20 000)
    run_steps: int  # steps actually run
    seconds: float  # wall time of the steps run (matrix construction excluded)
    build_seconds: float  # building the two dense matrices
    matrix_bytes: int  # memory held by the two dense matrices

    @property
    def seconds_per_step(self) -> float:
        return self.seconds / max(self.run_steps, 1)

    @property
    def extrapolated(self) -> bool:
        return self.run_steps < self.steps

    @property
    def full_seconds(self) -> float:
        """Time of the whole schedule: measured, or extrapolated linearly when run_steps < steps."""
        return self.seconds if not self.extrapolated else self.seconds_per_step * self.steps


def reference_split(
    values: np.ndarray,
    *,
    qthres: float = 0.04,
    lr: float = 1e-5,
    steps: int = 20_000,
    run_steps: int | None = None,
    dtype: torch.dtype = torch.float32,
    matrices: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> ReferenceResult:
    """Run the reference recipe on one game (2^n outputs, binary order), as given (no normalisation)."""
    v64 = np.asarray(values, dtype=np.float64)
    size = len(v64)
    n = size.bit_length() - 1
    if size != 1 << n:
        raise ValueError(f"length must be 2^n, got {size}")
    run_steps = steps if run_steps is None else min(run_steps, steps)
    started = time.perf_counter()
    if matrices is None:
        m_and = and_matrix(n, dtype)
        m_or = or_matrix(n, dtype, m_and)
    else:
        m_and, m_or = (m.to(dtype) for m in matrices)
    build_seconds = time.perf_counter() - started
    m_and_t = m_and.t()  # views; torch's matmul handles the transposed layout
    m_or_t = m_or.t()

    v = torch.as_tensor(v64, dtype=dtype)
    tau = qthres * abs(float(v64[-1] - v64[0]))
    p = torch.zeros(size, dtype=dtype)
    q = torch.zeros(size, dtype=dtype)
    buf_p = torch.zeros(size, dtype=dtype)
    buf_q = torch.zeros(size, dtype=dtype)
    log_lr = math.log10(lr)
    schedule = np.logspace(log_lr, log_lr - 1.0, steps)
    loss = float("nan")

    started = time.perf_counter()
    for step in range(run_steps):
        q.clamp_(-tau, tau)
        half = 0.5 * (v + q)
        i_and = m_and @ (half + p)
        i_or = m_or @ (half - p)
        loss = float(i_and.abs().sum() + i_or.abs().sum())
        last = step + 1 == run_steps
        if last:  # the recipe takes no step after its last loss evaluation
            break
        g_and = m_and_t @ torch.sign(i_and)
        g_or = m_or_t @ torch.sign(i_or)
        rate = float(schedule[step])
        # SGD with momentum 0.9: buf = 0.9 buf + grad; param -= rate buf (the first buf is the grad)
        buf_p.mul_(0.9).add_(g_and - g_or)
        buf_q.mul_(0.9).add_(0.5 * (g_and + g_or))
        p.sub_(buf_p, alpha=rate)
        q.sub_(buf_q, alpha=rate)
    seconds = time.perf_counter() - started
    return ReferenceResult(
        p=p.double().numpy().copy(),
        q=q.double().numpy().copy(),
        tau=tau,
        loss=loss,
        steps=steps,
        run_steps=run_steps,
        seconds=seconds,
        build_seconds=build_seconds,
        matrix_bytes=m_and.element_size() * m_and.numel() + m_or.element_size() * m_or.numel(),
    )


def reference_terms(values: np.ndarray, p: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """I_and and I_or (all 2^n entries, float64, dense matrices) of the split given by p and q."""
    v = np.asarray(values, dtype=np.float64)
    n = len(v).bit_length() - 1
    m_and = and_matrix(n, torch.float64)
    m_or = or_matrix(n, torch.float64, m_and)
    half = 0.5 * (torch.as_tensor(v) + torch.as_tensor(q))
    i_and = (m_and @ (half + torch.as_tensor(p))).numpy()
    i_or = (m_or @ (half - torch.as_tensor(p))).numpy()
    return i_and, i_or
