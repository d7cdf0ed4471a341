"""Charts as inline SVG, drawn on the server: no script, no library, no network.

Each function returns markup ready for a template; every text is escaped.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

from markupsafe import Markup, escape

PALETTE = ("#1f6fb2", "#e07b00", "#2a9d5c", "#c0392b", "#7b4fb3", "#6b7a89")
_ids = itertools.count(1)


def _svg(width: int, height: int, title: str, body: list[str]) -> Markup:
    ident = f"chart-{next(_ids)}"
    return Markup(
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-labelledby="{ident}" preserveAspectRatio="xMinYMin meet">'
        f'<title id="{ident}">{escape(title)}</title>{"".join(body)}</svg>'
    )


def _text(
    x: float, y: float, text: object, anchor: str = "start", cls: str = ""
) -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" class="{cls}">'
        f"{escape(str(text))}</text>"
    )


def _fmt(value: float) -> str:
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:.3g}"


def bar_chart(
    labels: Sequence[object],
    series: dict[str, Sequence[float]],
    title: str,
    fmt: Callable[[float], str] = _fmt,
) -> Markup:
    """Horizontal bars, one group per label and one bar per series (phone-friendly)."""
    names = list(series)
    bar, gap, left, right, top = 16, 10, 170, 70, 8
    width = 640
    group = bar * len(names) + gap
    legend = 22 if len(names) > 1 else 0
    height = top + legend + group * max(1, len(labels)) + 4
    peak = max([v for values in series.values() for v in values] or [0]) or 1
    body = []
    if legend:
        for k, name in enumerate(names):
            x = left + k * 140
            body.append(
                f'<rect x="{x}" y="{top}" width="12" height="12" '
                f'fill="{PALETTE[k % len(PALETTE)]}"/>'
            )
            body.append(_text(x + 16, top + 11, name, cls="legend"))
    for i, label in enumerate(labels):
        y0 = top + legend + i * group
        body.append(_text(left - 8, y0 + group / 2 + 2, label, "end", "label"))
        for k, name in enumerate(names):
            value = series[name][i]
            length = (width - left - right) * value / peak
            y = y0 + k * bar
            body.append(
                f'<rect x="{left}" y="{y}" width="{max(length, 1):.1f}" '
                f'height="{bar - 2}" fill="{PALETTE[k % len(PALETTE)]}">'
                f"<title>{escape(f'{label} {name}: {fmt(value)}')}</title>"
                "</rect>"
            )
            body.append(_text(left + length + 4, y + bar - 4, fmt(value), cls="value"))
    return _svg(width, height, title, body)


def histogram(edges: Sequence[float], counts: Sequence[int], title: str) -> Markup:
    """Vertical bars over value ranges (for regressors' predictions)."""
    width, height, left, bottom, top = 640, 240, 48, 36, 10
    plot_w, plot_h = width - left - 10, height - top - bottom
    peak = max(counts or [0]) or 1
    step = plot_w / max(1, len(counts))
    body = [
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - 10}" '
        f'y2="{top + plot_h}" class="axis"/>',
        _text(left - 6, top + 10, _fmt(peak), "end", "tick"),
        _text(left - 6, top + plot_h, "0", "end", "tick"),
    ]
    for i, count in enumerate(counts):
        h = plot_h * count / peak
        body.append(
            f'<rect x="{left + i * step + 1:.1f}" y="{top + plot_h - h:.1f}" '
            f'width="{max(step - 2, 1):.1f}" height="{h:.1f}" fill="{PALETTE[0]}">'
            f"<title>{escape(f'{edges[i]:.4g} to {edges[i + 1]:.4g}: {count}')}"
            "</title></rect>"
        )
    for i in (0, len(counts) // 2, len(counts)):
        anchor = "start" if i == 0 else "end" if i == len(counts) else "middle"
        body.append(
            _text(
                left + i * step, height - bottom + 16, f"{edges[i]:.4g}", anchor, "tick"
            )
        )
    return _svg(width, height, title, body)


def line_chart(
    x_labels: Sequence[str],
    series: dict[str, Sequence[float | None]],
    title: str,
    fmt: Callable[[float], str] = _fmt,
) -> Markup:
    """Lines over time; the x labels are shown at the start, middle and end. A
    ``None`` leaves a gap; a point without a neighbour is drawn as a dot."""
    width, left, right, top, bottom = 640, 52, 12, 10, 40
    names = list(series)
    legend_rows = (len(names) + 2) // 3
    height = 220 + 18 * legend_rows
    plot_w, plot_h = width - left - right, 220 - top - bottom
    peak = (
        max([v for values in series.values() for v in values if v is not None] or [0])
        or 1
    )
    n = max(1, len(x_labels) - 1)
    body = [
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - right}" '
        f'y2="{top + plot_h}" class="axis"/>'
    ]
    for fraction in (0, 0.5, 1):
        y = top + plot_h * (1 - fraction)
        body.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" '
            'class="grid"/>'
        )
        body.append(_text(left - 6, y + 4, fmt(peak * fraction), "end", "tick"))
    for i in sorted({0, len(x_labels) // 2, len(x_labels) - 1}):
        if 0 <= i < len(x_labels):
            last = i == len(x_labels) - 1
            anchor = "start" if i == 0 else "end" if last else "middle"
            body.append(
                _text(
                    left + plot_w * i / n,
                    top + plot_h + 16,
                    x_labels[i],
                    anchor,
                    "tick",
                )
            )
    for k, name in enumerate(names):
        colour = PALETTE[k % len(PALETTE)]
        for run in _runs(series[name]):
            points = [
                (left + plot_w * i / n, top + plot_h * (1 - v / peak)) for i, v in run
            ]
            if len(points) == 1:
                ((x, y),) = points
                body.append(
                    f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"/>'
                )
                continue
            line = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
            body.append(
                f'<polyline points="{line}" fill="none" stroke="{colour}" '
                'stroke-width="2"/>'
            )
        lx, ly = left + (k % 3) * 190, 226 + 18 * (k // 3)
        body.append(
            f'<rect x="{lx}" y="{ly - 10}" width="12" height="12" fill="{colour}"/>'
        )
        body.append(_text(lx + 16, ly, name, cls="legend"))
    return _svg(width, height, title, body)


def _runs(values: Sequence[float | None]) -> list[list[tuple[int, float]]]:
    """The stretches of (index, value) between ``None``s."""
    runs: list[list[tuple[int, float]]] = [[]]
    for i, value in enumerate(values):
        if value is None:
            runs.append([])
        else:
            runs[-1].append((i, value))
    return [run for run in runs if run]


def signed_bars(
    labels: Sequence[object], values: Sequence[float], title: str
) -> Markup:
    """Horizontal bars from a zero line: positive to the right, negative to the left
    (contributions that push an output up or down)."""
    bar, left, width, top = 18, 170, 640, 8
    half = (width - left - 60) / 2
    zero = left + 30 + half
    peak = max([abs(v) for v in values] or [0]) or 1
    height = top + bar * max(1, len(labels)) + 4
    body = [
        f'<line x1="{zero:.1f}" y1="{top}" x2="{zero:.1f}" y2="{height - 2}" '
        'stroke="#6b7a89"/>'
    ]
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        y = top + i * bar
        length = max(half * abs(value) / peak, 1)
        x = zero if value >= 0 else zero - length
        colour = PALETTE[0] if value >= 0 else PALETTE[3]
        body.append(_text(left - 8, y + bar - 5, label, "end", "label"))
        body.append(
            f'<rect x="{x:.1f}" y="{y}" width="{length:.1f}" height="{bar - 3}" '
            f'fill="{colour}"><title>{escape(f"{label}: {value:+.4g}")}</title></rect>'
        )
    return _svg(width, height, title, body)
