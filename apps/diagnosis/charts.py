"""The models dashboard's charts, drawn on the server as SVG (no script, no inline style: every
colour is a class of static/css/app.css or an SVG presentation attribute).

Each function returns a ``Chart``: the geometry the template ``diagnosis/_chart.html`` draws, a
title and a description for screen readers (``role="img"``), and the same figures as a table,
shown under the chart, so that nothing on a chart is only visual.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .models import DriftCheck, DriftSignal, PerformanceArm, label_display
from .performance import CALIBRATION_BINS, INDETERMINATE, Rate, VersionSummary

WIDTH, HEIGHT = 560, 220
LEFT, RIGHT, TOP, BOTTOM = 52, 30, 14, 38


@dataclass
class Point:
    x: float
    y: float
    label: str
    low: float | None = None  # whisker ends (pixels), e.g. a confidence interval
    high: float | None = None
    flagged: bool = False


@dataclass
class Cell:
    x: float
    y: float
    width: float
    height: float
    shade: int  # 0-5: the heat-map class (app.css .heat-0 … .heat-5)
    text: str
    label: str

    @property
    def cx(self) -> float:
        return self.x + self.width / 2

    @property
    def cy(self) -> float:
        return self.y + self.height / 2


@dataclass
class Chart:
    id: str
    title: str
    description: str
    table_headers: list[str]
    table_rows: list[list[str]]
    kind: str = "line"
    width: int = WIDTH
    height: int = HEIGHT
    x_ticks: list[tuple[float, str]] = field(default_factory=list)
    y_ticks: list[tuple[float, str]] = field(default_factory=list)
    points: list[Point] = field(default_factory=list)
    line: str = ""  # SVG path data joining the points
    reference_line: tuple[float, float, float, float] | None = None  # x1, y1, x2, y2
    reference_label: str = ""
    cells: list[Cell] = field(default_factory=list)
    row_labels: list[tuple[float, str]] = field(default_factory=list)
    column_labels: list[tuple[float, str]] = field(default_factory=list)
    empty: str = ""

    @property
    def plot(self) -> tuple[int, int, int, int]:
        """The plot area: left, top, right, bottom (pixels)."""
        return LEFT, TOP, self.width - RIGHT, self.height - BOTTOM


def _x(index: int, count: int) -> float:
    span = WIDTH - LEFT - RIGHT
    return LEFT + (span / 2 if count <= 1 else span * index / (count - 1))


def _y(value: float, top: float) -> float:
    """``value`` in [0, top] → pixels (0 at the bottom of the plot)."""
    span = HEIGHT - TOP - BOTTOM
    return HEIGHT - BOTTOM - span * max(0.0, min(value, top)) / top


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.0%}"


def _rate_text(rate: Rate) -> str:
    if rate.n == 0 or rate.interval is None:
        return "—"
    low, high = rate.interval
    return f"{rate.successes / rate.n:.0%} ({low:.0%}–{high:.0%})"


def _path(segments: list[list[Point]]) -> str:
    """SVG path data through each run of points (a gap between runs)."""
    return " ".join("M " + " L ".join(f"{p.x:.1f},{p.y:.1f}" for p in run) for run in segments if run)


def _every(items: list, at_most: int = 8) -> set[int]:
    """Indexes of at most ``at_most`` evenly spread tick labels (always the last)."""
    if not items:
        return set()
    step = max(1, -(-len(items) // at_most))
    return {i for i in range(len(items)) if i % step == 0} | {len(items) - 1}


def agreement_over_time(summary: VersionSummary) -> Chart:
    """Weekly share of reviewed reads whose label the doctor kept, with its 95% interval."""
    weeks = [w for w in summary.weeks if w.reviewed_determinate]
    version = summary.model_version.version + (" (shadow)" if summary.arm == PerformanceArm.SHADOW else "")
    chart = Chart(
        id=f"agreement-{summary.model_version.pk}-{summary.arm}",
        title=f"Doctor's label matched the AI label, week by week: {version}",
        description=(
            f"Line chart of the weekly share of reviewed reads by {version} whose label matched the doctor's, "
            "with 95% confidence intervals as vertical bars. The table below lists the same figures."
        ),
        table_headers=["Week of", "Reviewed reads with a label", "Matched the doctor", "Share (95% interval)"],
        table_rows=[],
        y_ticks=[(_y(v, 1.0), f"{v:.0%}") for v in (0, 0.25, 0.5, 0.75, 1.0)],
        empty="No reviewed reads yet.",
    )
    shown = _every(weeks)
    for i, week in enumerate(weeks):
        rate = Rate(week.agreed, week.reviewed_determinate)
        value, interval = rate.value, rate.interval
        assert value is not None and interval is not None  # weeks with reviewed reads only
        low, high = interval
        x = _x(i, len(weeks))
        chart.points.append(
            Point(x, _y(value, 1.0), f"{week.week:%d %b}: {_rate_text(rate)}", _y(low, 1.0), _y(high, 1.0))
        )
        if i in shown:
            chart.x_ticks.append((x, f"{week.week:%d %b}"))
        chart.table_rows.append(
            [f"{week.week:%Y-%m-%d}", str(week.reviewed_determinate), str(week.agreed), _rate_text(rate)]
        )
    chart.line = _path([chart.points])
    return chart


def drift_signal(scope: str, signal: str, checks: list[DriftCheck]) -> Chart:
    """Daily values of one drift signal against its threshold (days without enough data are
    gaps in the line and say why in the table)."""
    name = DriftSignal(signal).label
    checks = sorted(checks, key=lambda c: c.day)
    threshold = checks[-1].threshold if checks else 0.0
    values = [c.value for c in checks if c.value is not None]
    top = max([threshold * 2, *values]) if values else max(threshold * 2, 1e-9)
    chart = Chart(
        id=f"drift-{checks[0].task if checks else 'none'}-{signal}",
        title=f"{name} ({scope})",
        description=(
            f"Line chart of the daily drift value of {name.lower()} ({scope}), "
            f"with its alert threshold {threshold:g} as a dashed line. The table below lists the same figures."
        ),
        table_headers=["Day", "Value", "Threshold", "Reads", "Over the threshold", "Compared with"],
        table_rows=[],
        y_ticks=[(_y(v, top), f"{v:.2g}") for v in (0, top / 2, top)],
        empty="Not computed yet.",
    )
    if checks:
        y = _y(threshold, top)
        chart.reference_line = (LEFT, y, WIDTH - RIGHT, y)
        chart.reference_label = f"threshold {threshold:g}"
    shown = _every(checks)
    segments: list[list[Point]] = [[]]
    for i, check in enumerate(checks):
        x = _x(i, len(checks))
        if i in shown:
            chart.x_ticks.append((x, f"{check.day:%d %b}"))
        if check.value is None:
            segments.append([])
            reason = str(check.details.get("reason", "not enough data"))
            chart.table_rows.append(
                [
                    f"{check.day:%Y-%m-%d}",
                    f"— ({reason})",
                    f"{check.threshold:g}",
                    str(check.n),
                    "—",
                    check.reference or "—",
                ]
            )
            continue
        point = Point(x, _y(check.value, top), f"{check.day:%d %b}: {check.value:.3g}", flagged=check.crossed)
        chart.points.append(point)
        segments[-1].append(point)
        chart.table_rows.append(
            [
                f"{check.day:%Y-%m-%d}",
                f"{check.value:.3g}",
                f"{check.threshold:g}",
                str(check.n),
                "yes" if check.crossed else "no",
                check.reference or "—",
            ]
        )
    chart.line = _path(segments)
    return chart


def confusion_heatmap(summary: VersionSummary) -> Chart:
    """AI label (rows, plus "indeterminate") against the doctor's label (columns), all weeks."""
    labels = [str(x) for x in summary.model_version.labels]
    rows = labels + ([INDETERMINATE] if INDETERMINATE in summary.confusion else [])
    version = summary.model_version.version
    chart = Chart(
        id=f"confusion-{summary.model_version.pk}-{summary.arm}",
        title=f"AI label against the doctor's label: {version}",
        description=(
            f"Heat map of {version}'s reviewed reads: one row per AI label, one column per doctor's label; "
            "darker cells hold more reads. The table below lists the same counts."
        ),
        kind="heatmap",
        table_headers=["AI label \\ doctor's label", *[label_display(c) for c in labels]],
        table_rows=[],
        height=TOP + 30 * len(rows) + 60,
        empty="No reviewed reads yet.",
    )
    if not summary.reviewed:
        return chart
    peak = max((n for doctors in summary.confusion.values() for n in doctors.values()), default=0) or 1
    left, cell_w, cell_h = 150, (WIDTH - 150 - RIGHT) / max(1, len(labels)), 30
    for r, ai in enumerate(rows):
        name = "Indeterminate" if ai == INDETERMINATE else label_display(ai)
        counts = summary.confusion.get(ai, {})
        chart.row_labels.append((TOP + cell_h * r + cell_h / 2, name))
        chart.table_rows.append([name, *[str(counts.get(c, 0)) for c in labels]])
        for c, doctor in enumerate(labels):
            n = int(counts.get(doctor, 0))
            chart.cells.append(
                Cell(
                    x=left + cell_w * c,
                    y=TOP + cell_h * r,
                    width=cell_w,
                    height=cell_h,
                    shade=0 if n == 0 else 1 + min(4, int(4 * n / peak)),
                    text=str(n),
                    label=f"AI {name}, doctor {label_display(doctor)}: {n}",
                )
            )
    chart.column_labels = [(left + cell_w * c + cell_w / 2, label_display(d)) for c, d in enumerate(labels)]
    return chart


def calibration(summary: VersionSummary) -> Chart:
    """Reliability from feedback: per confidence bin, the mean confidence against the share of
    reads whose label the doctor kept (a calibrated model sits on the diagonal)."""
    version = summary.model_version.version
    chart = Chart(
        id=f"calibration-{summary.model_version.pk}-{summary.arm}",
        title=f"Confidence against doctors' agreement: {version}",
        description=(
            f"Reliability chart of {version}: for each 10% band of the AI's confidence, the share of reviewed "
            "reads whose label the doctor kept, against the band's mean confidence; the dashed diagonal is perfect "
            "calibration. The table below lists the same figures."
        ),
        table_headers=["Confidence band", "Reviewed reads", "Mean confidence", "Label kept (95% interval)"],
        table_rows=[],
        y_ticks=[(_y(v, 1.0), f"{v:.0%}") for v in (0, 0.25, 0.5, 0.75, 1.0)],
        x_ticks=[(LEFT + (WIDTH - LEFT - RIGHT) * v, f"{v:.0%}") for v in (0, 0.25, 0.5, 0.75, 1.0)],
        reference_line=(LEFT, _y(0, 1.0), WIDTH - RIGHT, _y(1.0, 1.0)),
        reference_label="perfect calibration",
        empty="No reviewed reads yet.",
    )
    for index, (n, total, kept) in enumerate(summary.calibration):
        if not n:
            continue
        mean = total / n
        rate = Rate(int(kept), int(n))
        value, interval = rate.value, rate.interval
        assert value is not None and interval is not None  # n > 0 here
        low, high = interval
        x = LEFT + (WIDTH - LEFT - RIGHT) * mean
        chart.points.append(
            Point(x, _y(value, 1.0), f"{mean:.0%} confident: {_rate_text(rate)} kept", _y(low, 1.0), _y(high, 1.0))
        )
        band = f"{index / CALIBRATION_BINS:.0%}–{(index + 1) / CALIBRATION_BINS:.0%}"
        chart.table_rows.append([band, str(int(n)), _pct(mean), _rate_text(rate)])
    chart.line = _path([chart.points])
    return chart
