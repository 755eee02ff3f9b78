"""Plot benchmarks/run.py results: throughput of each implementation relative to raw C, per workload.

    python benchmarks/plot.py results/results.json results/results.png

Needs matplotlib only (run.py calls it with whichever Python has it: its own or the peers venv).
"""
from __future__ import annotations

import json
import sys
from typing import Any, Dict, List

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(src: str, dst: str) -> None:
    data: Dict[str, Any] = json.load(open(src))
    summary: Dict[str, Dict[str, Dict[str, Any]]] = data["summary"]
    meta = data["meta"]
    variants: List[str] = list(summary)
    impls: List[str] = list(meta["impls"])
    ref_name = "c" if any(summary[v].get("c", {}).get("median") for v in variants) else None

    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(max(8, 1.6 * len(variants) + 3), 9))
    width = 0.8 / max(1, len(impls))
    for k, impl in enumerate(impls):
        xs, rel, lo, hi, absolute = [], [], [], [], []
        for i, v in enumerate(variants):
            s = summary[v].get(impl, {})
            med = s.get("median")
            if med is None:
                continue
            ref = summary[v].get(ref_name, {}).get("median") if ref_name else None
            named = meta["variants"][v].get("ref")  # e.g. W3-many-uniq: C's W3-tasks-uniq
            if not ref and ref_name and named in summary:
                ref = summary[named].get(ref_name, {}).get("median")
            if not ref and ref_name:  # e.g. W3-many: C's W3-tasks, as in results.md
                wl = meta["variants"][v]["workload"]
                ref = next((summary[o].get(ref_name, {}).get("median") for o in variants
                            if meta["variants"][o]["workload"] == wl
                            and summary[o].get(ref_name, {}).get("median")), None)
            ref = ref or max(x.get("median") or 0 for x in summary[v].values())
            xs.append(i + (k - (len(impls) - 1) / 2) * width)
            rel.append(med / ref)
            lo.append((med - s["min"]) / ref)
            hi.append((s["max"] - med) / ref)
            absolute.append((i, med, s["unit"]))
        label = meta["impls"][impl]["label"]
        ax1.bar(xs, rel, width, yerr=[lo, hi], capsize=2, label=label)
    ax1.set_xticks(range(len(variants)))
    ax1.set_xticklabels(variants)
    ax1.set_yscale("log")
    ax1.axhline(1.0, color="grey", linewidth=0.8)
    ax1.set_ylabel("throughput relative to raw C (log)" if ref_name else "relative to the fastest (log)")
    ax1.set_title(f"Gearman throughput, median of {meta['repeat']} (bars: min–max) — {meta['date'][:10]}")
    ax1.legend(fontsize=8, ncol=2)

    # W2 latency percentiles, the one workload where latency is the point.
    lat = [(meta["impls"][i]["label"], summary.get("W2", {}).get(i, {})) for i in impls]
    lat = [(lbl, s) for lbl, s in lat if s.get("lat_p50_us") is not None]
    if lat:
        ys = range(len(lat))
        ax2.barh([y + 0.2 for y in ys], [s["lat_p50_us"] for _, s in lat], 0.4, label="p50")
        ax2.barh([y - 0.2 for y in ys], [s["lat_p99_us"] for _, s in lat], 0.4, label="p99")
        ax2.set_yticks(list(ys))
        ax2.set_yticklabels([lbl for lbl, _ in lat], fontsize=8)
        ax2.set_xlabel("W2 round-trip latency (µs), 64-byte echo")
        ax2.legend(fontsize=8)
    else:
        ax2.set_visible(False)
    fig.tight_layout()
    fig.savefig(dst, dpi=110)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: plot.py results.json results.png")
    main(sys.argv[1], sys.argv[2])
