"""Small server-side SVG charts for the console, from metadata only (counts, times, languages):
no sealed field is ever decrypted for statistics. Every chart has a text alternative (`aria-label`
and a `<title>` per mark) and its own colours with enough contrast; values are numbers and labels
are escaped, so nothing from the database can inject markup.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from markupsafe import Markup, escape

# Colour-blind-safe (Okabe–Ito), dark enough on white for marks (WCAG 1.4.11: 3:1).
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#8a6d00", "#56687a", "#6a3d9a", "#b2182b")
WIDTH, HEIGHT = 640, 240
LEFT, RIGHT, TOP, BOTTOM = 40, 10, 12, 44


def _nice_max(value: float) -> int:
    if value <= 5:
        return 5
    for step in (10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000):
        if value <= step:
            return step
    return int(value) + 1


def stacked_bars(
    label: str, categories: Sequence[str], series: Mapping[str, Sequence[float]], *, every: int = 1
) -> Markup:
    """Vertical bars per category, stacked by series; a legend underneath."""
    totals = [sum(values[i] for values in series.values()) for i in range(len(categories))]
    top = _nice_max(max(totals, default=0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / max(1, len(categories))
    bar = max(2.0, slot * 0.7)
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT + 20 * ((len(series) + 3) // 4)}" role="img" '
        f'aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">',
        f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{WIDTH - RIGHT}" y2="{TOP + plot_h}" class="axis"/>',
    ]
    for tick in (0, top // 2, top):
        y = TOP + plot_h - plot_h * tick / top
        parts.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" class="tick" text-anchor="end">{tick}</text>')
        parts.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" class="grid"/>')
    for i, category in enumerate(categories):
        x = LEFT + i * slot + (slot - bar) / 2
        base = float(TOP + plot_h)
        for index, (name, values) in enumerate(series.items()):
            value = values[i]
            if not value:
                continue
            height = plot_h * value / top
            base -= height
            parts.append(
                f'<rect x="{x:.1f}" y="{base:.1f}" width="{bar:.1f}" height="{height:.1f}" '
                f'fill="{PALETTE[index % len(PALETTE)]}"><title>{escape(category)}: {escape(name)} '
                f"{value:g}</title></rect>"
            )
        if i % every == 0:
            parts.append(
                f'<text x="{x + bar / 2:.1f}" y="{TOP + plot_h + 14}" class="tick" text-anchor="middle">'
                f"{escape(category)}</text>"
            )
    for index, name in enumerate(series):
        x = LEFT + (index % 4) * 150
        y = HEIGHT - 14 + 20 * (index // 4)
        parts.append(
            f'<rect x="{x}" y="{y - 10}" width="12" height="12" fill="{PALETTE[index % len(PALETTE)]}"/>'
            f'<text x="{x + 16}" y="{y}" class="legend">{escape(name)}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 — numbers and escaped labels only


def bars_and_line(
    label: str,
    categories: Sequence[str],
    bars: Sequence[float],
    line: Sequence[float],
    names: tuple[str, str],
) -> Markup:
    """Bars (demand) with a step line (supply) on the same scale."""
    top = _nice_max(max([*bars, *line], default=0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / max(1, len(categories))
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(label)}" '
        'xmlns="http://www.w3.org/2000/svg">',
        f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{WIDTH - RIGHT}" y2="{TOP + plot_h}" class="axis"/>',
    ]
    for tick in (0, top // 2, top):
        y = TOP + plot_h - plot_h * tick / top
        parts.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" class="tick" text-anchor="end">{tick}</text>')
        parts.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" class="grid"/>')
    points = []
    for i, category in enumerate(categories):
        x = LEFT + i * slot
        height = plot_h * bars[i] / top
        if bars[i]:
            parts.append(
                f'<rect x="{x + slot * 0.15:.1f}" y="{TOP + plot_h - height:.1f}" width="{slot * 0.7:.1f}" '
                f'height="{height:.1f}" fill="{PALETTE[0]}"><title>{escape(category)}: {escape(names[0])} '
                f"{bars[i]:g}</title></rect>"
            )
        y = TOP + plot_h - plot_h * line[i] / top
        points.append(f"{x:.1f},{y:.1f} {x + slot:.1f},{y:.1f}")
        parts.append(
            f'<circle cx="{x + slot / 2:.1f}" cy="{y:.1f}" r="3" fill="{PALETTE[1]}"><title>'
            f"{escape(category)}: {escape(names[1])} {line[i]:g}</title></circle>"
        )
        if i % 3 == 0:
            parts.append(
                f'<text x="{x + slot / 2:.1f}" y="{TOP + plot_h + 14}" class="tick" text-anchor="middle">'
                f"{escape(category)}</text>"
            )
    parts.append(
        f'<polyline points="{" ".join(points)}" fill="none" stroke="{PALETTE[1]}" stroke-width="2"/>'
    )
    for index, name in enumerate(names):
        x = LEFT + index * 220
        parts.append(
            f'<rect x="{x}" y="{HEIGHT - 24}" width="12" height="12" fill="{PALETTE[index]}"/>'
            f'<text x="{x + 16}" y="{HEIGHT - 14}" class="legend">{escape(name)}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 — numbers and escaped labels only


def coverage_grid(label: str, days: Sequence[str], counts: Sequence[Sequence[int]], gap_label: str) -> Markup:
    """Days × 24 hours; a cell's shade is how many are on call, gaps in a hatched red."""
    cell_w, cell_h, left, top_margin = 24, 22, 96, 18
    width, height = left + 24 * cell_w + 4, top_margin + len(days) * cell_h + 4
    peak = max((c for row in counts for c in row), default=0) or 1
    parts = [
        f'<svg class="chart coverage" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(label)}" '
        'xmlns="http://www.w3.org/2000/svg">'
    ]
    for hour in range(0, 24, 3):
        parts.append(
            f'<text x="{left + hour * cell_w + cell_w / 2}" y="12" class="tick" text-anchor="middle">'
            f"{hour:02d}</text>"
        )
    for row, day in enumerate(days):
        y = top_margin + row * cell_h
        parts.append(f'<text x="{left - 6}" y="{y + 15}" class="tick" text-anchor="end">{escape(day)}</text>')
        for hour, count in enumerate(counts[row]):
            x = left + hour * cell_w
            if count == 0:
                fill, extra = "#b2182b", ' class="gap"'
                note = gap_label
            else:
                shade = 0.25 + 0.75 * count / peak
                fill, extra, note = f"rgba(0,114,178,{shade:.2f})", "", str(count)
            parts.append(
                f'<rect x="{x}" y="{y}" width="{cell_w - 2}" height="{cell_h - 2}" fill="{fill}"{extra}>'
                f"<title>{escape(day)} {hour:02d}:00 — {escape(note)}</title></rect>"
            )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 — numbers and escaped labels only
