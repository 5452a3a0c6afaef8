"""Paired significance tests between methods on per-query scores, with Holm's correction.

Both tests the IR literature uses side by side (Smucker, Allan and Carterette, "A Comparison of
Statistical Significance Tests for Information Retrieval Evaluation", CIKM 2007): the paired
t-test and the randomisation (permutation) test, from SciPy. Every method is compared with one
baseline on one collection, so the p-values of that family are corrected with Holm's step-down
method (Holm, 1979) before anything is called significant.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

#: Family-wise significance level.
ALPHA = 0.05
RESAMPLES = 10_000


@dataclass
class Comparison:
    method: str
    baseline: str
    delta: float
    t_p: float
    randomisation_p: float
    t_p_holm: float = float("nan")
    randomisation_p_holm: float = float("nan")

    @property
    def significant(self) -> bool:
        """Both corrected tests below :data:`ALPHA` (the conservative reading)."""
        return self.t_p_holm < ALPHA and self.randomisation_p_holm < ALPHA

    @property
    def mark(self) -> str:
        """``▲``/``▼`` significantly better/worse than the baseline, else empty."""
        if not self.significant:
            return ""
        return "▲" if self.delta > 0 else "▼"


def paired_p_values(a: Sequence[float], b: Sequence[float], seed: int = 0) -> tuple[float, float]:
    """Two-sided p-values of (paired t-test, paired randomisation test) for ``mean(a - b) != 0``."""
    import numpy as np
    from scipy import stats

    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape or x.size < 2:
        raise ValueError("paired tests need two equally long score lists of at least 2 queries")
    if np.allclose(x, y):
        return 1.0, 1.0
    t_p = float(stats.ttest_rel(x, y).pvalue)
    perm = stats.permutation_test(
        (x, y),
        lambda u, v, axis: np.mean(u - v, axis=axis),
        permutation_type="samples",
        n_resamples=RESAMPLES,
        alternative="two-sided",
        vectorized=True,
        random_state=seed,
    )
    return t_p, float(perm.pvalue)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (monotone, capped at 1), in the input order."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [1.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def compare_to_baseline(
    per_query: Mapping[str, Mapping[str, float]], baseline: str, queries: Sequence[str], seed: int = 0
) -> dict[str, Comparison]:
    """Every method of ``per_query`` (method -> query -> score) against ``baseline``."""
    base = [per_query[baseline][q] for q in queries]
    out: dict[str, Comparison] = {}
    for method, scores in per_query.items():
        if method == baseline:
            continue
        mine = [scores[q] for q in queries]
        t_p, r_p = paired_p_values(mine, base, seed)
        out[method] = Comparison(method, baseline, sum(mine) / len(mine) - sum(base) / len(base), t_p, r_p)
    t_adj = holm([c.t_p for c in out.values()])
    r_adj = holm([c.randomisation_p for c in out.values()])
    for c, t, r in zip(out.values(), t_adj, r_adj):
        c.t_p_holm, c.randomisation_p_holm = t, r
    return out


def compare_pairs(
    per_query: Mapping[str, Mapping[str, float]], pairs: Mapping[str, str], queries: Sequence[str], seed: int = 0
) -> dict[str, Comparison]:
    """Each method of ``pairs`` against its own baseline (method -> baseline), e.g. every
    "+Rerank" row against the same retrieval without it; Holm's correction over the family."""
    out: dict[str, Comparison] = {}
    for method, baseline in pairs.items():
        mine = [per_query[method][q] for q in queries]
        base = [per_query[baseline][q] for q in queries]
        t_p, r_p = paired_p_values(mine, base, seed)
        out[method] = Comparison(method, baseline, sum(mine) / len(mine) - sum(base) / len(base), t_p, r_p)
    t_adj = holm([c.t_p for c in out.values()])
    r_adj = holm([c.randomisation_p for c in out.values()])
    for c, t, r in zip(out.values(), t_adj, r_adj):
        c.t_p_holm, c.randomisation_p_holm = t, r
    return out
