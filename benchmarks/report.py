"""The benchmark's table and ratios, printed and written to benchmarks/results/."""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def _find(cells, app, model, rows, conns, note=""):
    """The cell (or the mean of repeated cells) for these coordinates."""
    found = [
        c
        for c in cells
        if (c["app"], c["model"], c["rows"], c["connections"], c["note"])
        == (app, model, rows, conns, note)
    ]
    if len(found) <= 1:
        return found[0] if found else None
    return {
        key: sum(c[key] for c in found) / len(found)
        for key in ("rps", "rows_per_s", "p50_ms", "p99_ms")
    }


def _ratio(a, b, key="rps"):
    if not a or not b or not b[key]:
        return None
    return round(a[key] / b[key], 2)


def ratios(cells: list[dict]) -> list[dict]:
    """The issue's targets, each computed from cells of this run."""
    out = []

    def add(name, value, target, passed, detail=""):
        out.append(
            {
                "ratio": name,
                "value": value,
                "target": target,
                "met": passed,
                "detail": detail,
            }
        )

    conns_list = sorted({c["connections"] for c in cells if c["note"] == ""})
    for model, target in (("forest", 10.0), ("logistic", 1.5)):
        for conns in conns_list:
            value = _ratio(
                _find(cells, "modeldock", model, 1, conns),
                _find(cells, f"tutorial-{model}", model, 1, conns),
            )
            add(
                f"{model}, 1 row, {conns} conn: ModelDock / tutorial req/s",
                value,
                f">= {target}" if conns == 8 else "-",
                None if conns != 8 or value is None else value >= target,
            )
    for model in ("logistic", "forest"):
        for conns in conns_list:
            value = _ratio(
                _find(cells, "modeldock", model, 1, conns),
                _find(cells, "constant", "-", 1, conns),
            )
            add(
                f"{model}, 1 row, {conns} conn: ModelDock / constant JSON req/s",
                value,
                ">= 0.5" if conns == 8 else "-",
                None if conns != 8 or value is None else value >= 0.5,
            )
        value = _ratio(
            _find(cells, "modeldock", model, 1, 8),
            _find(cells, "flask-constant", "-", 1, 8, "reference"),
        )
        add(
            f"{model}, 1 row, 8 conn: ModelDock / Flask constant req/s",
            value,
            "-",
            None,
            "Flask alone, for attribution",
        )
        cell = _find(cells, "modeldock", model, 1, 8)
        if cell:
            add(
                f"{model}, 1 row, 8 conn: ModelDock p99 ms",
                cell["p99_ms"],
                "<= 5",
                cell["p99_ms"] <= 5.0,
            )
    for model in ("logistic", "forest"):
        for conns in conns_list:
            value = _ratio(
                _find(cells, "modeldock", model, 100, conns),
                _find(cells, "raw", model, 100, conns),
                "rows_per_s",
            )
            add(
                f"{model}, 100 rows, {conns} conn: ModelDock / framework-free rows/s",
                value,
                ">= 1.5" if conns == 8 else "-",
                None if conns != 8 or value is None else value >= 1.5,
            )
    for model in ("logistic", "forest"):
        value = _ratio(
            _find(cells, "modeldock", model, 1, 8, "logging"),
            _find(cells, "modeldock-nolog", model, 1, 8, "logging"),
        )
        add(
            f"{model}, 1 row, 8 conn: logging on / off req/s",
            value,
            ">= 0.9",
            None if value is None else value >= 0.9,
            "mean of two runs each; Prometheus metrics on in both: they have no switch",
        )
    for model in ("logistic", "forest"):
        value = _ratio(
            _find(cells, "modeldock", model, 1, 8, "limits"),
            _find(cells, "modeldock-locallimits", model, 1, 8, "limits"),
        )
        add(
            f"{model}, 1 row, 8 conn: rate limits in Redis / in each worker req/s",
            value,
            "-",
            None,
            "what shared rate limits cost",
        )
    for conns in (8, 32):
        off = _find(cells, "modeldock", "forest-01", 1, conns, "sklearn")
        on = _find(cells, "modeldock-batch", "forest-01", 1, conns, "sklearn")
        if off and on:
            add(
                f"forest on scikit-learn, 1 row, {conns} conn: micro-batching on / off "
                "req/s",
                _ratio(on, off),
                "trade-off",
                None,
                f"p99 {off['p99_ms']:.1f} ms off, {on['p99_ms']:.1f} ms on",
            )
    return out


def table(cells: list[dict]) -> str:
    lines = [
        "| app | model | rows | conns | req/s | p50 ms | p99 ms | rows/s | errors "
        "| load avg before |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in cells:
        app = c["app"] + (f" ({c['note']})" if c["note"] else "")
        lines.append(
            f"| {app} | {c['model']} | {c['rows']} | {c['connections']} | "
            f"{c['rps']:.0f} | {c['p50_ms']:.2f} | {c['p99_ms']:.2f} | "
            f"{c['rows_per_s']:.0f} | {c['errors']} | "
            f"{c['load_before']:.2f} |"
        )
    return "\n".join(lines)


def ratio_table(rows: list[dict]) -> str:
    lines = ["| ratio (same run) | value | target | met |", "|---|---:|---|---|"]
    for r in rows:
        met = {True: "yes", False: "**no**", None: ""}[r["met"]]
        detail = f" ({r['detail']})" if r["detail"] else ""
        lines.append(f"| {r['ratio']}{detail} | {r['value']} | {r['target']} | {met} |")
    return "\n".join(lines)


def write(result: dict) -> None:
    result["ratios"] = ratios(result["cells"])
    memory = result["memory"]
    text = "\n\n".join(
        [
            f"Machine before: `{result['uptime_before']}`  \n"
            f"Machine after: `{result['uptime_after']}`  \n"
            f"gunicorn (every app): `{result['gunicorn']}`; Redis rate limits: "
            f"{'on' if result['redis'] else 'off (Redis did not answer)'}; "
            f"{result['seconds_per_cell']} s per cell at 8 connections (one less at 1 "
            f"and 32); whole run "
            f"{result['wall_seconds']} s.",
            "Runtimes ModelDock chose: "
            + "; ".join(
                f"{n}: {v['runtime']} ({v['runtime_verdict']}, {v['runtime_reason']}, "
                f"one-row speed-up {v['onnx_speedup']}x)"
                for n, v in result["versions"].items()
            ),
            table(result["cells"]),
            ratio_table(result["ratios"]),
            "Where a ModelDock worker spends its time (forest, 1 row, 8 connections, "
            "py-spy samples of the thread holding the GIL): "
            + (
                "; ".join(
                    f"{part} {share}%" for part, share in result.get("profile") or []
                )
                or "py-spy not installed"
            ),
            "Worker memory (ModelDock, per worker): "
            + "; ".join(
                f"{label}: "
                + ", ".join(
                    f"RSS {w['rss_mb']} MB (peak {w['peak_mb']} MB)" for w in workers
                )
                for label, workers in memory.items()
            ),
        ]
    )
    print("\n" + text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(result, indent=1))
    (RESULTS / "latest.md").write_text(text + "\n")
