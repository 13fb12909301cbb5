"""The report's two figures, drawn from results.json: a latency CDF and a per-instance scatter."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

_COLORS = {"proofrace": "tab:blue", "polling": "tab:red", "pysmt": "tab:green"}
_LABELS = {"proofrace": "proofrace", "polling": "100 ms polling flag", "pysmt": "pySMT Portfolio"}
_STYLES = ["-", "--", ":", "-."]
_TITLES = {
    "cancel": "cancel call → all reaped",
    "drop": "token dropped → all reaped",
    "first_success": "first success → losers reaped",
}
_MARKERS = {"smtlib2": "o", "dimacs": "s", "tptp": "^"}


def latency_cdf(latency: dict[str, Any], path: Path) -> Path:
    samples = latency["samples"]
    triggers = [t for t in _TITLES if samples.get(t)]
    figure, axes = plt.subplots(
        1, len(triggers), figsize=(5 * len(triggers), 5), sharex=True, sharey=True
    )
    if len(triggers) == 1:
        axes = [axes]
    for ax, trigger in zip(axes, triggers, strict=True):
        for mechanism, by_k in samples[trigger].items():
            for index, (k, values) in enumerate(sorted(by_k.items(), key=lambda kv: int(kv[0]))):
                if not values:
                    continue
                ordered = sorted(values)
                ordered.insert(0, ordered[0])  # the curve starts from 0 at the fastest race
                fractions = [i / (len(ordered) - 1) for i in range(len(ordered))]
                ax.step(
                    ordered,
                    fractions,
                    where="post",
                    color=_COLORS[mechanism],
                    linestyle=_STYLES[index % len(_STYLES)],
                    label=f"{_LABELS[mechanism]}, {k}",
                )
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_ylim(0, 1.02)
        ax.set_title(_TITLES[trigger])
        ax.set_xlabel("milliseconds (log)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("fraction of races")
    # One legend for all panels, below them, so that no curve hides under it.
    legend: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            legend.setdefault(label, handle)
    figure.legend(
        legend.values(),
        legend.keys(),
        loc="lower center",
        ncol=3,
        fontsize=8,
        title="mechanism, attempts to stop",
        title_fontsize=8,
    )
    figure.tight_layout(rect=(0, 0.17, 1, 1))
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def portfolio_scatter(portfolio: list[dict[str, Any]], timeout: float, path: Path) -> Path:
    figure, ax = plt.subplots(figsize=(6, 6))
    floor = min(
        [r["sequential"]["seconds"] for r in portfolio]
        + [r["portfolio"]["seconds"] for r in portfolio]
    )
    low, high = max(floor * 0.7, 1e-3), timeout * 2.5
    for fmt, marker in _MARKERS.items():
        chosen = [r for r in portfolio if r["instance"]["format"] == fmt]
        if not chosen:
            continue
        ax.scatter(
            [r["sequential"]["seconds"] for r in chosen],
            [r["portfolio"]["seconds"] for r in chosen],
            marker=marker,
            alpha=0.7,
            label=f"{fmt} ({len(chosen)})",
        )
    ax.plot([low, high], [low, high], color="grey", linewidth=1, label="equal time")
    ax.plot([low, high], [low / 2, high / 2], color="grey", linewidth=1, linestyle=":",
            label="race 2x faster")  # fmt: skip
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(low, high)
    ax.set_ylim(low, high)
    ax.set_xlabel("sequential, host's way (s, log)")
    ax.set_ylabel("proofrace firstWins through the service (s, log)")
    ax.set_title("Per instance: below the diagonal the race is faster")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
