"""Fusion tuned from judged queries, with k-fold cross-validation.

Each retriever's ranking of every judged query is fetched once; every candidate
:class:`~sparsehybrid.fusion.FusionSetting` is then scored per query by fusing those rankings
with the same :func:`~sparsehybrid.fusion.fuse` the searcher uses (so a recorded setting
reproduces at search time) and evaluating with ir-measures. Cross-validation chooses a setting
on the training folds and scores it on the held-out fold only, so the reported gain is what a
new query can expect, not what the grid could fit.

The grid is small on purpose: 4 weight steps per retriever, 4 RRF k, 4 methods. A coarse grid
overfits less on collections with tens of judged queries.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..fusion import FusionSetting, fuse
from .metrics import METRICS, Qrels, Run, per_query

#: Weight steps per retriever (0 leaves a retriever out; only proportions matter).
WEIGHT_STEPS = (0.0, 0.5, 1.0, 2.0)
#: RRF k values tried (60 is the paper's default).
RRF_KS = (10, 30, 60, 100)
SCORE_METHODS = ("minmax", "zscore", "dbsf")
#: What tuning maximises.
OBJECTIVE = "NDCG@10"
#: Fewer judged training queries than this keep plain RRF: too few to choose among the grid.
MIN_TRAIN_QUERIES = 10


def candidate_settings(retrievers: Sequence[str]) -> list[FusionSetting]:
    """Every setting the tuner tries; plain RRF comes first so it wins ties."""
    plain = FusionSetting("rrf", 60, {r: 1.0 for r in retrievers})
    out = [plain]
    seen_single: set[str] = set()
    directions: list[tuple[float, ...]] = []
    for combo in itertools.product(WEIGHT_STEPS, repeat=len(retrievers)):
        top = max(combo)
        if top == 0:
            continue
        direction = tuple(round(w / top, 6) for w in combo)
        if direction not in directions:
            directions.append(direction)
    for direction in directions:
        weights = dict(zip(retrievers, direction))
        used = [r for r, w in weights.items() if w > 0]
        if len(used) == 1:  # one retriever alone: every method ranks the same
            if used[0] not in seen_single:
                seen_single.add(used[0])
                out.append(FusionSetting("rrf", 60, {r: float(r == used[0]) for r in retrievers}))
            continue
        out += [FusionSetting("rrf", k, weights) for k in RRF_KS]
        out += [FusionSetting(m, 60, weights) for m in SCORE_METHODS]
    return _unique(out)


def _key(s: FusionSetting) -> tuple:
    return (s.method, s.k, tuple(sorted(s.weights.items())))


def _unique(settings: list[FusionSetting]) -> list[FusionSetting]:
    seen: set[tuple] = set()
    out = []
    for s in settings:
        if _key(s) not in seen:
            seen.add(_key(s))
            out.append(s)
    return out


def fused_run(runs: Mapping[str, Run], setting: FusionSetting, queries: Sequence[str], limit: int | None) -> Run:
    """``setting`` applied to per-retriever runs, as :class:`~sparsehybrid.search.HybridSearcher` would."""
    used = [r for r in runs if setting.weight(r) > 0]
    out: Run = {}
    for q in queries:
        rankings = {r: runs[r].get(q, []) for r in used}
        if len(used) == 1:
            out[q] = list(rankings[used[0]])[:limit]
            continue
        items = fuse(setting.method, rankings, k=setting.k, weights={r: setting.weight(r) for r in used}, limit=limit)
        out[q] = [(it.id, it.score) for it in items]
    return out


def score_settings(
    runs: Mapping[str, Run], qrels: Qrels, queries: Sequence[str], settings: Sequence[FusionSetting]
) -> list[list[float]]:
    """Per-query NDCG@10 of every setting: ``scores[setting][query]``."""
    measure = {OBJECTIVE: METRICS[OBJECTIVE]}
    table = []
    for s in settings:
        values = per_query(qrels, fused_run(runs, s, queries, limit=10), queries, measure)[OBJECTIVE]
        table.append([values[q] for q in queries])
    return table


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def folds_of(queries: Sequence[object], n_folds: int, seed: int) -> list[list[int]]:
    """Query positions split into ``n_folds`` shuffled folds of near-equal size."""
    if n_folds < 2:
        raise ValueError(f"cross-validation needs at least 2 folds, got {n_folds}")
    if len(queries) < n_folds:
        raise ValueError(f"{len(queries)} judged queries cannot make {n_folds} folds; use fewer folds")
    order = list(range(len(queries)))
    random.Random(seed).shuffle(order)
    return [sorted(order[i::n_folds]) for i in range(n_folds)]


def best_setting(scores: Sequence[Sequence[float]], positions: Sequence[int]) -> int:
    """Index of the setting with the highest mean over ``positions`` (the first on ties)."""
    return _best_of(scores, positions, range(len(scores)))


def choose_setting(scores: Sequence[Sequence[float]], train: Sequence[int]) -> int:
    """The setting to use after seeing ``train``: the best on it (plain RRF wins ties), or plain
    RRF when there are too few queries to choose from 241 settings.

    Measured on the shared collections over 8 fold splits, this plain choice beat plain RRF out of
    fold on average on three of four (+0.003 to +0.012 NDCG@10) and tied on the smallest (cacm,
    52 queries: −0.0005). More conservative rules (an inner cross-validation, a t-test before
    leaving plain RRF) gave those gains up and still lost on some splits.
    """
    if len(train) < MIN_TRAIN_QUERIES:
        return 0
    return best_setting(scores, train)


def _best_of(scores: Sequence[Sequence[float]], positions: Sequence[int], candidates: Sequence[int]) -> int:
    return max(candidates, key=lambda i: (_mean([scores[i][j] for j in positions]), -i))


@dataclass
class TuningResult:
    """What tuning found on one collection (all NDCG@10 means are over folds)."""

    retrievers: list[str]
    settings: list[FusionSetting]
    #: The setting chosen on all judged queries: what gets recorded in the collection.
    chosen: FusionSetting
    folds: int
    seed: int
    #: Per fold: the setting chosen on the other folds, and held-out NDCG@10 of tuned, plain RRF
    #: (all retrievers) and the collection's best single retriever (best over all queries: the
    #: strongest single baseline a table would show).
    fold_reports: list[dict[str, Any]] = field(default_factory=list)
    #: Query id -> the setting its fold's training chose (the cross-validated run uses it).
    per_query_setting: dict[str, FusionSetting] = field(default_factory=dict)

    def mean_over_folds(self, key: str) -> float:
        return _mean([f[key] for f in self.fold_reports])

    def summary(self) -> dict[str, Any]:
        return {
            "retrievers": self.retrievers,
            "chosen": self.chosen.to_dict(),
            "chosen_text": self.chosen.describe(),
            "folds": self.folds,
            "seed": self.seed,
            "settings_tried": len(self.settings),
            "cv_ndcg@10": {
                "tuned": self.mean_over_folds("tuned"),
                "plain_rrf": self.mean_over_folds("plain_rrf"),
                "best_single": self.mean_over_folds("best_single"),
            },
            "fold_reports": self.fold_reports,
        }


def tune(
    runs: Mapping[str, Run],
    qrels: Qrels,
    queries: Sequence[str],
    *,
    folds: int = 5,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> TuningResult:
    """Cross-validated fusion tuning over ``runs`` (retriever -> run) on judged ``queries``."""
    retrievers = [r for r in runs if runs[r]]
    if len(retrievers) < 2:
        raise ValueError(f"fusion tuning needs at least two retrievers with results, got {retrievers}")
    queries = list(queries)
    parts = folds_of(queries, folds, seed)
    settings = candidate_settings(retrievers)
    if progress:
        progress(f"scoring {len(settings)} fusion settings on {len(queries)} queries")
    scores = score_settings(runs, qrels, queries, settings)
    singles = [i for i, s in enumerate(settings) if sum(w > 0 for w in s.weights.values()) == 1]
    everything = list(range(len(queries)))
    single = _best_of(scores, everything, singles)
    result = TuningResult(retrievers, settings, settings[choose_setting(scores, everything)], folds, seed)
    for n, test in enumerate(parts):
        train = [i for i in everything if i not in set(test)]
        chosen = choose_setting(scores, train)
        for j in test:
            result.per_query_setting[queries[j]] = settings[chosen]
        result.fold_reports.append(
            {
                "fold": n + 1,
                "queries": len(test),
                "chosen": settings[chosen].describe(),
                "tuned": _mean([scores[chosen][j] for j in test]),
                "plain_rrf": _mean([scores[0][j] for j in test]),
                "best_single": _mean([scores[single][j] for j in test]),
                "best_single_name": next(r for r, w in settings[single].weights.items() if w > 0),
            }
        )
    return result


def cross_validated_run(runs: Mapping[str, Run], result: TuningResult, limit: int | None) -> Run:
    """Each query fused with the setting chosen without it: the run to evaluate tuning by."""
    out: Run = {}
    for q, setting in result.per_query_setting.items():
        out.update(fused_run(runs, setting, [q], limit))
    return out


# -- judgement-free rules --------------------------------------------------------------------------
def agreement_weights(runs: Mapping[str, Run], queries: Sequence[str], depth: int = 10) -> dict[str, float]:
    """Weights from how much each retriever's top ``depth`` agrees with the others' (no judgements).

    A retriever whose top results the others also find is more likely right on this collection;
    one that disagrees with everyone is down-weighted. Scaled so the largest weight is 1.
    """
    names = [r for r in runs if runs[r]]
    agree = {r: 0.0 for r in names}
    for q in queries:
        tops = {r: {d for d, _ in runs[r].get(q, [])[:depth]} for r in names}
        for r in names:
            others = set().union(*(tops[o] for o in names if o != r))
            agree[r] += len(tops[r] & others) / depth
    top = max(agree.values()) or 1.0
    return {r: round(v / top, 3) for r, v in agree.items()}


def unsupervised_settings(runs: Mapping[str, Run], queries: Sequence[str]) -> dict[str, FusionSetting]:
    """Judgement-free candidates for a better default than plain RRF (compared in the benchmark)."""
    retrievers = [r for r in runs if runs[r]]
    equal = {r: 1.0 for r in retrievers}
    return {
        "RRF agreement-weighted": FusionSetting("rrf", 60, agreement_weights(runs, queries)),
        "Min-max": FusionSetting("minmax", 60, equal),
        "Z-score": FusionSetting("zscore", 60, equal),
        "DBSF": FusionSetting("dbsf", 60, equal),
    }
