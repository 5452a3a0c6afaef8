"""The benchmark's charts (matplotlib, headless): NDCG@10 per method, quality against latency."""

from __future__ import annotations

from pathlib import Path


def plot_ndcg(path: Path, rows: list[dict]) -> None:
    """Grouped bars: NDCG@10 per method, one group per dataset (and the mean)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    val = {(r["dataset"], r["method"]): r["NDCG@10"] for r in rows}
    x = np.arange(len(datasets))
    width = 0.8 / len(methods)
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(datasets) + 0.3 * len(methods)), 3.8), dpi=100)
    for i, m in enumerate(methods):
        ys = [val.get((d, m), 0.0) for d in datasets]
        ax.bar(x - 0.4 + width * (i + 0.5), ys, width, label=m)
    ax.set_xticks(x, datasets)
    ax.set_ylabel("NDCG@10")
    ax.set_ylim(0, min(1.0, max(val.values()) * 1.25 + 0.02))
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, ncol=min(3, len(methods)), loc="upper left")
    ax.set_title("NDCG@10 per method")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_quality_latency(path: Path, rows: list[dict]) -> None:
    """NDCG@10 against p50 query latency, one marker per method, one colour per dataset."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if r["p50_ms"] is not None]  # offline methods have no latency
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    markers = "osD^v<>phX*"
    methods = list(dict.fromkeys(r["method"] for r in rows))
    fig, ax = plt.subplots(figsize=(6.5, 4.2), dpi=100)
    for di, d in enumerate(datasets):
        for r in (r for r in rows if r["dataset"] == d):
            mi = methods.index(r["method"])
            ax.scatter(
                r["p50_ms"],
                r["NDCG@10"],
                color=f"C{di}",
                marker=markers[mi % len(markers)],
                s=60 if d == "mean" else 35,
                edgecolors="black" if d == "mean" else "none",
                label=None,
            )
    for di, d in enumerate(datasets):
        ax.scatter([], [], color=f"C{di}", marker="o", label=d)
    for mi, m in enumerate(methods):
        ax.scatter([], [], color="grey", marker=markers[mi % len(markers)], label=m)
    ax.set_xscale("log")
    ax.set_xlabel("p50 query latency (ms, log scale)")
    ax.set_ylabel("NDCG@10")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best", ncol=2)
    ax.set_title("Quality against latency")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_sweeps(path: Path, sweeps: dict[str, dict[str, list[list[float]]]]) -> None:
    """NDCG@10 of RRF against k (equal weights) and against the dense weight, one line per dataset."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("rrf_k", "RRF k (equal weights)"), ("dense_weight", "dense weight (RRF k = 60, others 1)")]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), dpi=100)
    for ax, (key, label) in zip(axes, panels):
        for di, (dataset, sweep) in enumerate(sweeps.items()):
            if key in sweep:
                xs, ys = zip(*sweep[key])
                ax.plot(xs, ys, marker="o", color=f"C{di}", label=dataset)
        if key == "rrf_k":
            ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("NDCG@10")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Fusion sweeps")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_rerank_depth(path: Path, rows: list[dict]) -> None:
    """NDCG@10 by rerank depth (depth 0 = the hybrid), one line per collection, and the
    reranker's mean time per query on a second axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def depth(method: str) -> int:
        return int(method.rsplit("@", 1)[1]) if "@" in method else 0

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    lat_ax = ax.twinx()
    for collection in dict.fromkeys(r["collection"] for r in rows):
        mine = sorted((r for r in rows if r["collection"] == collection), key=lambda r: depth(r["method"]))
        (line,) = ax.plot(
            [depth(r["method"]) for r in mine], [r["NDCG@10"] for r in mine], marker="o", label=collection
        )
        timed = [r for r in mine if r["rerank_ms_mean"] is not None]
        lat_ax.plot(
            [depth(r["method"]) for r in timed],
            [r["rerank_ms_mean"] for r in timed],
            linestyle=":",
            marker="x",
            color=line.get_color(),
        )
    ax.set_xlabel("candidates reranked (0 = hybrid, no rerank)")
    ax.set_ylabel("NDCG@10 (solid)")
    lat_ax.set_ylabel("rerank ms / query (dotted)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("Rerank depth: quality and cost")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
