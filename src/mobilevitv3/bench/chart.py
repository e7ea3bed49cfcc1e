"""Charts of benchmark reports (matplotlib `Figure` with its own Agg canvas: no pyplot, no global state).

`chart`: median latency against parameters, one series per implementation/runtime of a `bench` report.
`accuracy_chart`: the paper's kind of figure, reported ImageNet top-1 against our measured latency (and
throughput, a panel each).
`line_chart`: a small grid of latency curves (scaling with input size or batch).
"""
from __future__ import annotations

import io

from ..weights import atomic_write

MARKERS = "osD^v<>p*h"


def short_name(name: str) -> str:
    """mobilevit_xxs -> v1-XXS, mobilevitv2_050 -> v2-0.5, mobilevitv3_s_l2 -> v3-S-L2 (the papers' names)."""
    arch = name.partition(".")[0]
    family = "v1" if arch.startswith("mobilevit_") else arch[len("mobilevit"):].partition("_")[0]
    rest = arch.partition("_")[2]
    if rest[:3].isdigit():
        width = f"{int(rest[:3]) / 100:.2f}".rstrip("0")
        rest = (width + "0" if width.endswith(".") else width) + rest[3:]
    return f"{family}-{rest.upper().replace('_', '-')}"


def _plain_ticks(ax, *axes: str) -> None:
    from matplotlib.ticker import ScalarFormatter
    for which in axes:
        axis = ax.xaxis if which == "x" else ax.yaxis
        axis.set_major_formatter(ScalarFormatter())
        axis.set_minor_formatter(ScalarFormatter())
        axis.get_minor_formatter().set_scientific(False)


def _figure(size: tuple[float, float] = (7, 4.5), panels: int = 1):
    from matplotlib.figure import Figure  # no pyplot: no global figure state, no GUI backend
    fig = Figure(figsize=size, layout="constrained")
    return fig, fig.subplots(1, panels, squeeze=False)[0]


def _save(fig, path: str) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=130)
    atomic_write(path, lambda f: f.write(buf.getvalue()))


def _where(report: dict) -> str:
    env = report["environment"]
    return env.get("gpu") or f"{env['cpu']}, {env['threads']} threads"


def chart(report: dict, path: str) -> None:
    """Median latency against parameters, one series per `impl/runtime`, as a PNG."""
    fig, (ax,) = _figure()
    labels = list(dict.fromkeys(k for r in report["results"] for k in r.get("runtimes", {})))
    for i, label in enumerate(labels):
        rows = [(r["name"], r["runtimes"][label]) for r in report["results"] if label in r.get("runtimes", {})]
        rows = [(n, s) for n, s in rows if s.get("latency_ms_median")]
        xs, ys = [s["params"] / 1e6 for _, s in rows], [s["latency_ms_median"] for _, s in rows]
        ax.scatter(xs, ys, marker=MARKERS[i % len(MARKERS)], label=label)
        if i == 0:
            for (n, _), x, y in zip(rows, xs, ys):
                ax.annotate(short_name(n), (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    c = report["config"]
    flags = "".join(f", {label}" for key, label in (("channels_last", "channels-last"),
                                                     ("fuse", "BN folded (ours)")) if c[key])
    ax.set(xlabel="parameters (M)", ylabel="median latency (ms)",
           title=f"batch {c['batch_size']}, {c['image_size']}px, {c['dtype']}{flags} -- {_where(report)}")
    ax.margins(x=0.15, y=0.1)
    ax.title.set_fontsize(8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)


# One line per family, the v3 models split by the family they extend (widths 0.5-2.0 vs XXS/XS/S), as in the paper.
FAMILY_LINES = (("MobileViT", ":", "s"), ("MobileViTv2", "--", "^"), ("MobileViTv3 (v1-based)", "-", "o"),
                ("MobileViTv3 (v2-based)", "-.", "D"))


def _line_of(short: str) -> str:
    """'v1-XXS' -> MobileViT, 'v2-1.0' -> MobileViTv2, 'v3-XS' / 'v3-0.5' -> the v3 line of the family it extends."""
    if short.startswith("v3"):
        return FAMILY_LINES[3][0] if short[3:4].isdigit() else FAMILY_LINES[2][0]
    return FAMILY_LINES[1][0] if short.startswith("v2") else FAMILY_LINES[0][0]


def accuracy_chart(panels: dict[str, dict[str, list[tuple[str, float, float]]]], path: str, *, title: str) -> None:
    """Reported top-1 (%) against measured speed, one panel per x-axis label in `panels` (batch-1 latency in ms,
    throughput in images/s, ...), each mapping a runtime label to (name, x, top-1) points; points of one family
    are joined in order of x, as in the papers' accuracy-vs-cost figures; x on a log scale."""
    fig, axes = _figure((1 + 7 * len(panels), 6.5), panels=len(panels))
    for p, (ax, (xlabel, series)) in enumerate(zip(axes, panels.items())):
        for i, (label, points) in enumerate(series.items()):
            _family_lines(ax, label, points, f"C{i}", annotate=i == 0)
        ax.set(xscale="log", xlabel=xlabel, ylabel="ImageNet-1k top-1 (%, reported)" if p == 0 else None)
        _plain_ticks(ax, "x")
        ax.tick_params(axis="x", which="minor", labelsize=6)
        ax.grid(alpha=0.3, which="both")
    fig.suptitle(title, fontsize=8)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, ncol=3 if len(panels) == 1 else 4, loc="outside lower center")
    _save(fig, path)


def _family_lines(ax, label: str, points: list[tuple[str, float, float]], color: str, *, annotate: bool) -> None:
    for family, style, marker in FAMILY_LINES:
        pts = sorted((x, top1, n) for n, x, top1 in points if _line_of(short_name(n)) == family)
        if not pts:
            continue
        ax.plot([p[0] for p in pts], [p[1] for p in pts], style, marker=marker, color=color,
                label=f"{label}: {family}", markersize=5)
        if annotate:
            for x, top1, n in pts:
                ax.annotate(short_name(n), (x, top1), fontsize=6, xytext=(3, -8), textcoords="offset points")


def line_chart(panels: dict[str, dict[str, list[tuple[float, float]]]], path: str, *, xlabel: str,
               ylabel: str, title: str, logy: bool = True) -> None:
    """One panel per key of `panels`, one curve per (label, [(x, y), ...]) inside it."""
    fig, axes = _figure((4.2 * len(panels), 3.8), panels=len(panels))
    for ax, (name, curves) in zip(axes, panels.items()):
        for i, (label, points) in enumerate(curves.items()):
            ax.plot([p[0] for p in points], [p[1] for p in points], marker=MARKERS[i % len(MARKERS)], label=label)
        ax.set(xlabel=xlabel, ylabel=ylabel, title=name, yscale="log" if logy else "linear")
        if logy:
            _plain_ticks(ax, "y")
            ax.tick_params(axis="y", which="minor", labelsize=6)
        ax.title.set_fontsize(9)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    _save(fig, path)
