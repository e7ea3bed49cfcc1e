"""Charts of benchmark reports (matplotlib `Figure` with its own Agg canvas: no pyplot, no global state)."""
from __future__ import annotations

import io

from ..weights import atomic_write


def chart(report: dict, path: str) -> None:
    """Median latency against parameters, ours and (where timed) timm's, as a PNG."""
    from matplotlib.figure import Figure  # no pyplot: no global figure state, no GUI backend
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.subplots()
    for side, marker in (("ours", "o"), ("timm", "s")):
        rows = [(r["name"], r if side == "ours" else r.get("timm")) for r in report["results"]]
        rows = [(n, s) for n, s in rows if s and s.get("latency_ms_median")]
        if not rows:
            continue
        xs, ys = [s["params"] / 1e6 for _, s in rows], [s["latency_ms_median"] for _, s in rows]
        ax.scatter(xs, ys, marker=marker, label="mobilevitv3" if side == "ours" else "timm")
        if side == "ours":
            for (n, _), x, y in zip(rows, xs, ys):
                ax.annotate(n, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    c, env = report["config"], report["environment"]
    where = env.get("gpu") or f"{env['cpu']}, {env['threads']} threads"
    flags = "".join(f", {label}" for key, label in (("channels_last", "channels-last"), ("compile", "compiled"),
                                                     ("fuse", "BN folded (ours)")) if c[key])
    ax.set(xlabel="parameters (M)", ylabel="median latency (ms)",
           title=f"batch {c['batch_size']}, {c['image_size']}px, {c['dtype']}, {c['runtime']}{flags} -- {where}")
    ax.margins(x=0.15, y=0.1)
    ax.title.set_fontsize(8)
    ax.grid(alpha=0.3)
    ax.legend()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=130)
    atomic_write(path, lambda f: f.write(buf.getvalue()))
