"""Draw the benchmark charts in docs/ from a results JSON (``bench/run.py``).

``python bench/charts.py [bench/results/latest.json]`` redraws them;
``bench/run.py --write-docs`` calls :func:`draw` itself.

- ``docs/images/bench-throughput.png``: W1 get and put MB/s by lane and
  contender (bars at the median, whiskers from min to max);
- ``docs/images/bench-memory.png``: RSS over time of each contender's W1 get
  and put in the S3-like lane (its first round), from process start;
- ``docs/images/bench-cache.png``: the cache workload by lane: 64 KiB
  gets/s and 64 MiB get MB/s of S3 alone (and the filesystem store alone),
  and the cache cold and warm;
- ``docs/images/bench-limits.png``: sriblob's W1 get (default and one
  stream) and put by lane, beside the lane's limits: sha512 on one core and
  one ``curl`` stream of the blob.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import matplotlib as mpl

mpl.use("Agg")
import matplotlib.pyplot as plt

HERE = Path(__file__).resolve().parent
PHASES = (
    ("w1get", "get_mbps", "W1 get, 256 MiB"),
    ("w1put", "put_mbps", "W1 put, 256 MiB"),
)


def _bars(axis: Any, report: dict[str, Any], workload: str, key: str) -> None:
    lanes = [
        lane for lane, found in report["lanes"].items() if workload in found["summary"]
    ]
    contenders: list[str] = []
    for lane in lanes:
        for contender in report["lanes"][lane]["summary"][workload]:
            if contender not in contenders:
                contenders.append(contender)
    width = 0.8 / max(len(contenders), 1)
    for index, contender in enumerate(contenders):
        heights, low, high, xs = [], [], [], []
        for position, lane in enumerate(lanes):
            stats = (
                report["lanes"][lane]["summary"][workload].get(contender, {}).get(key)
            )
            if stats is None:
                continue
            xs.append(position + (index - (len(contenders) - 1) / 2) * width)
            heights.append(stats["median"])
            low.append(stats["median"] - stats["min"])
            high.append(stats["max"] - stats["median"])
        axis.bar(xs, heights, width, yerr=[low, high], capsize=2, label=contender)
    axis.set_xticks(range(len(lanes)), lanes)
    axis.set_ylabel("MB/s (median, min–max)")
    axis.grid(axis="y", alpha=0.3)
    axis.legend(fontsize="small", ncols=2)


def _memory(axis: Any, lane: dict[str, Any], workload: str) -> None:
    for contender, results in lane["raw"].get(workload, {}).items():
        series = results[0].get("rss_series") if results else None
        if series:
            axis.plot(
                [t for t, _ in series],
                [m for _, m in series],
                marker=".",
                markersize=2,
                linewidth=1,
                label=contender,
            )
    axis.set_xlabel("seconds since the worker started")
    axis.set_ylabel("RSS, MiB")
    axis.grid(alpha=0.3)
    axis.legend(fontsize="small")


def draw(report: dict[str, Any], docs: Path) -> list[Path]:
    """Draw the charts of *report* into ``docs/images``; return their paths."""
    images = docs / "images"
    images.mkdir(exist_ok=True)
    drawn = []
    figure, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    for axis, (workload, key, title) in zip(axes, PHASES, strict=True):
        _bars(axis, report, workload, key)
        axis.set_title(title)
    figure.suptitle(f"sriblob benchmarks, {report['date']}")
    figure.tight_layout()
    path = images / "bench-throughput.png"
    figure.savefig(path, dpi=90)
    plt.close(figure)
    drawn.append(path)
    name = "s3like" if "s3like" in report["lanes"] else next(iter(report["lanes"]))
    lane = report["lanes"][name]
    figure, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    for axis, (workload, _, title) in zip(axes, PHASES, strict=True):
        _memory(axis, lane, workload)
        axis.set_title(f"{title}: RSS over time, {name} lane")
    figure.tight_layout()
    path = images / "bench-memory.png"
    figure.savefig(path, dpi=90)
    plt.close(figure)
    drawn.append(path)
    extras = (draw_limits(report, docs), draw_cache(report, docs))
    return drawn + [extra for extra in extras if extra is not None]


#: The limits chart: (workload, contender, key, label), per lane.
LIMIT_BARS = (
    ("limits", "limits", "sha512_mbps", "sha512, one core"),
    ("limits", "curl", "curl_mbps", "one stream, curl"),
    ("w1get", "sriblob-single", "get_mbps", "sriblob get, one stream"),
    ("w1get", "sriblob", "get_mbps", "sriblob get, default"),
    ("w1put", "sriblob", "put_mbps", "sriblob put, default"),
)


def draw_limits(report: dict[str, Any], docs: Path) -> Path | None:
    """Draw sriblob's W1 throughput beside each lane's limits; return the path."""
    lanes = [
        name for name, lane in report["lanes"].items() if "limits" in lane["summary"]
    ]
    if not lanes:
        return None
    figure, axis = plt.subplots(figsize=(13, 4.8))
    width = 0.8 / len(LIMIT_BARS)
    for index, (workload, contender, key, label) in enumerate(LIMIT_BARS):
        xs, heights, low, high = [], [], [], []
        for position, lane in enumerate(lanes):
            summary = report["lanes"][lane]["summary"]
            stats = summary.get(workload, {}).get(contender, {}).get(key)
            if stats is None:
                continue
            xs.append(position + (index - (len(LIMIT_BARS) - 1) / 2) * width)
            heights.append(stats["median"])
            low.append(stats["median"] - stats["min"])
            high.append(stats["max"] - stats["median"])
        axis.bar(xs, heights, width, yerr=[low, high], capsize=2, label=label)
    axis.set_xticks(range(len(lanes)), lanes)
    axis.set_ylabel("MB/s (median, min–max)")
    axis.set_title("W1 (256 MiB) beside the limits: sha512 on one core, one stream")
    axis.grid(axis="y", alpha=0.3)
    axis.legend(fontsize="small", ncols=3)
    figure.tight_layout()
    images = docs / "images"
    images.mkdir(exist_ok=True)
    path = images / "bench-limits.png"
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path


CACHE_BARS = (
    (
        "64 KiB gets (300 at concurrency 16), gets/s",
        (
            ("s3_small_ops", "S3 alone"),
            ("cold_small_ops", "cache, cold"),
            ("warm_small_ops", "cache, warm"),
        ),
    ),
    (
        "64 MiB get, MB/s",
        (
            ("s3_large_mbps", "S3 alone"),
            ("fs_large_mbps", "filesystem alone"),
            ("cold_large_mbps", "cache, cold"),
            ("warm_large_mbps", "cache, warm"),
        ),
    ),
)


#: One colour per series, the same in both panels.
CACHE_COLOURS = {
    "S3 alone": "tab:blue",
    "filesystem alone": "tab:orange",
    "cache, cold": "tab:green",
    "cache, warm": "tab:red",
}


def draw_cache(report: dict[str, Any], docs: Path) -> Path | None:
    """Draw the cache workload of *report*, if it has one; return the path."""
    lanes = {
        name: lane["summary"]["cache"]["sriblob-cached"]
        for name, lane in report["lanes"].items()
        if "cache" in lane.get("summary", {})
    }
    if not lanes:
        return None
    figure, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    for axis, (title, bars) in zip(axes, CACHE_BARS, strict=True):
        width = 0.8 / len(bars)
        for n, (key, label) in enumerate(bars):
            xs = [i + n * width for i in range(len(lanes))]
            stats = [lane.get(key, {}) for lane in lanes.values()]
            medians = [s.get("median", 0) for s in stats]
            low = [m - s.get("min", m) for m, s in zip(medians, stats, strict=True)]
            high = [s.get("max", m) - m for m, s in zip(medians, stats, strict=True)]
            axis.bar(
                xs,
                medians,
                width,
                yerr=[low, high],
                capsize=3,
                label=label,
                color=CACHE_COLOURS[label],
            )
        axis.set_xticks([i + 0.4 - width / 2 for i in range(len(lanes))])
        axis.set_xticklabels(list(lanes))
        axis.set_title(title)
        axis.legend(fontsize=8)
    figure.suptitle(f"CachedBlobStore(filesystem, S3), {report['date']}")
    figure.tight_layout()
    images = docs / "images"
    images.mkdir(exist_ok=True)
    path = images / "bench-cache.png"
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path


def main(argv: list[str]) -> int:
    paths = [arg for arg in argv if not arg.startswith("--")]
    source = Path(paths[0]) if paths else HERE / "results" / "latest.json"
    report = json.loads(source.read_text())
    if "--cache" in argv:
        path = draw_cache(report, HERE.parent / "docs")
        print(path or "no cache workload in the report")
        return 0
    for path in draw(report, HERE.parent / "docs"):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
