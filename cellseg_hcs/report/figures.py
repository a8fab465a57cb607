"""The report's charts, as plotly figures: plate map, time per stage, feature distributions.

Each function takes plain tables (from :mod:`cellseg_hcs.report.run_folder`) and returns a
``plotly.graph_objects.Figure``; the page embeds them as JSON and draws them with the
plotly.js bundle it carries inline. Only summaries go into a figure (per-well numbers,
histogram bins, quartiles), never one value per object, so a plate of a million cells
still makes a small page.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..io.plate import well_name
from .run_folder import PlateLayout, outliers

BINS = 60
MAX_OUTLIER_LINES = 5
FEW_WELLS = 8
"""With this many wells or fewer, every well's distribution is drawn beside the plate's."""
NOT_RUN = "#d9d9d9"
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif"


@dataclass(frozen=True)
class MapLayer:
    """One colouring of the plate map: a column of the wells table and how to call it."""

    column: str
    title: str


def _base_layout(**extra) -> dict:
    layout = {
        "font": {"family": FONT, "size": 12},
        "margin": {"l": 50, "r": 20, "t": 40, "b": 40},
        "paper_bgcolor": "white",
        "plot_bgcolor": "white",
    }
    layout.update(extra)
    return layout


# ----------------------------------------------------------------------------- plate map


def well_hover(well: str, row: pd.Series, count_columns: list[str], layers: list[MapLayer]) -> str:
    """The hover text of one well: its fields' states and every number the map can show."""
    if not row.get("fields", 0):
        return f"<b>{well}</b><br>not in this run"
    parts = [f"<b>{well}</b>", f"{int(row['fields'])} field(s): {int(row['ok'])} ok"]
    if row["empty"]:
        parts[-1] += f", {int(row['empty'])} empty"
    if row["failed"]:
        parts[-1] += f", <b>{int(row['failed'])} failed</b>"
    for column in count_columns:
        value = row.get(column)
        name = column.removeprefix("Count_")
        parts.append(f"{name}: {'-' if pd.isna(value) else f'{value:,.0f}'}")
    for layer in layers:
        if layer.column in count_columns:
            continue
        value = row.get(layer.column)
        parts.append(f"{layer.title}: {'-' if pd.isna(value) else f'{value:,.4g}'}")
    return "<br>".join(parts)


def plate_map(
    layout: PlateLayout, wells: pd.DataFrame, layers: list[MapLayer], count_columns: list[str]
):
    """The plate as a grid of wells, coloured by each layer in turn (a menu switches them),
    with failed and empty fields marked; hovering a well shows all its numbers."""
    import plotly.graph_objects as go

    rows, columns = list(layout.rows), list(layout.columns)
    names = [[well_name(r, c) for c in columns] for r in rows]
    hover = [[well_hover(w, wells.loc[w], count_columns, layers) for w in line] for line in names]
    big = len(rows) * len(columns) > 384
    figure = go.Figure()
    for index, layer in enumerate(layers):
        z = [[_number(wells.loc[w].get(layer.column)) for w in line] for line in names]
        figure.add_trace(
            go.Heatmap(
                x=list(range(len(columns))),
                y=list(range(len(rows))),
                z=z,
                text=hover,
                customdata=names,
                hovertemplate="%{text}<extra></extra>",
                colorscale="Viridis",
                colorbar={"title": {"text": layer.title, "side": "right"}, "thickness": 14},
                xgap=2,
                ygap=2,
                texttemplate="" if big else "%{z:,.3~s}",
                textfont={"size": 9 if len(columns) > 12 else 11},
                visible=index == 0,
                name=layer.title,
            )
        )
    _mark_fields(figure, layout, wells, names)
    cell = max(14, min(80, 760 // max(1, len(columns))))
    figure.update_layout(
        **_base_layout(
            width=cell * len(columns) + 190,
            height=cell * len(rows) + 120,
            plot_bgcolor=NOT_RUN,
            margin={"l": 40, "r": 20, "t": 60 if len(layers) > 1 else 30, "b": 20},
            legend={"orientation": "h", "y": -0.02, "yanchor": "top", "x": 0},
            updatemenus=[_layer_menu(layers, len(figure.data))] if len(layers) > 1 else [],
        )
    )
    # Numeric axes labelled with the names, so a well's marks can sit side by side in it.
    figure.update_xaxes(
        side="top",
        tickvals=list(range(len(columns))),
        ticktext=columns,
        range=[-0.5, len(columns) - 0.5],
        constrain="domain",  # square wells shrink the plot, never widen the plate
        showgrid=False,
        zeroline=False,
        ticks="",
        fixedrange=True,
    )
    figure.update_yaxes(
        tickvals=list(range(len(rows))),
        ticktext=rows,
        range=[len(rows) - 0.5, -0.5],
        constrain="domain",
        showgrid=False,
        zeroline=False,
        ticks="",
        fixedrange=True,
        scaleanchor="x",
    )
    return figure


def _number(value) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


def _mark_fields(figure, layout: PlateLayout, wells: pd.DataFrame, names: list[list[str]]) -> None:
    import plotly.graph_objects as go

    marks = {  # status: symbol, colour, legend, offset from the well's centre
        "failed": ("x-thin", "#d62728", "a field failed", -0.22),
        "empty": ("circle-open", "#ff8c00", "a field is empty (no objects)", 0.22),
    }
    for status, (symbol, colour, label, offset) in marks.items():
        x, y, text, names_marked = [], [], [], []
        for r, line in enumerate(names):
            for c, well in enumerate(line):
                count = int(wells.loc[well].get(status, 0) or 0)
                if count:
                    x.append(c + offset)
                    y.append(r)
                    text.append(f"<b>{well}</b><br>{count} field(s) {status}")
                    names_marked.append(well)
        if not x:
            continue
        figure.add_trace(
            go.Scatter(
                x=x,
                y=y,
                mode="markers",
                marker={
                    "symbol": symbol,
                    "size": 10,
                    "color": colour,
                    "line": {"width": 3, "color": colour},
                },
                text=text,
                customdata=names_marked,
                hovertemplate="%{text}<extra></extra>",
                name=label,
                showlegend=True,
            )
        )


def _layer_menu(layers: list[MapLayer], traces: int) -> dict:
    buttons = []
    for index, layer in enumerate(layers):
        visible = [i == index for i in range(len(layers))] + [True] * (traces - len(layers))
        buttons.append({"label": layer.title, "method": "restyle", "args": [{"visible": visible}]})
    return {
        "buttons": buttons,
        "direction": "down",
        "x": 0,
        "xanchor": "left",
        "y": 1.0,
        "yanchor": "bottom",
        "pad": {"b": 28},
        "showactive": True,
    }


# ----------------------------------------------------------------------------- time


def stage_split(images: pd.DataFrame, stages: list[str]):
    """Seconds spent in each stage, summed over the fields, as bars with their share."""
    import plotly.graph_objects as go

    totals = images[stages].sum(numeric_only=True)
    names = [s.removeprefix("Seconds_") for s in stages]
    share = totals / totals.sum() * 100 if totals.sum() > 0 else totals * 0
    figure = go.Figure(
        go.Bar(
            x=totals.values,
            y=names,
            orientation="h",
            text=[f"{s:.0f}%" for s in share],
            textposition="outside",
            cliponaxis=False,
            marker={"color": "#4c78a8"},
            hovertemplate="%{y}: %{x:.2f} s<extra></extra>",
        )
    )
    figure.update_layout(
        **_base_layout(
            height=60 + 28 * len(stages),
            width=560,
            margin={"l": 110, "r": 50, "t": 10, "b": 40},
        )
    )
    figure.update_xaxes(
        title_text="seconds, summed over fields", gridcolor="#eee", rangemode="tozero"
    )
    figure.update_yaxes(autorange="reversed")
    return figure


# ----------------------------------------------------------------------------- features


def feature_distribution(values: pd.DataFrame, column: str, wells_order: list[str]):
    """One feature: its histogram over the plate with the outlier wells' (or, on a small
    plate, every well's) beside it, and its quartiles in each well, outlier wells in red.

    ``values`` holds one row per object with ``Metadata_Well`` and ``column``.
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    data = values[["Metadata_Well", column]].dropna()
    per_well = data.groupby("Metadata_Well")[column]
    medians = per_well.median()
    odd = outliers(medians)
    figure = make_subplots(
        rows=1,
        cols=2,
        column_widths=[0.42, 0.58],
        horizontal_spacing=0.09,
        subplot_titles=("distribution (share of objects)", "per well: median, quartiles, 5-95%"),
    )
    edges = _bin_edges(data[column].to_numpy())
    centres = (edges[:-1] + edges[1:]) / 2
    figure.add_trace(
        go.Bar(
            x=centres,
            y=_share(data[column].to_numpy(), edges),
            width=np.diff(edges),
            marker={"color": "#9aa7b8"},
            name=f"plate ({len(data):,} objects)",
            hovertemplate="%{x:.4g}: %{y:.1%}<extra>plate</extra>",
        ),
        row=1,
        col=1,
    )
    drawn = list(medians.index) if len(medians) <= FEW_WELLS else list(odd.index)
    for well in drawn[:MAX_OUTLIER_LINES] if len(medians) > FEW_WELLS else drawn:
        label = f"{well} (z={odd[well]:+.1f})" if well in odd.index else well
        figure.add_trace(
            go.Scatter(
                x=centres,
                y=_share(data.loc[data["Metadata_Well"] == well, column].to_numpy(), edges),
                mode="lines",
                line={"shape": "hvh", "width": 2},
                name=label,
                hovertemplate="%{x:.4g}: %{y:.1%}<extra>" + well + "</extra>",
            ),
            row=1,
            col=1,
        )
    quantiles = per_well.quantile([0.05, 0.25, 0.5, 0.75, 0.95]).unstack()
    order = [w for w in wells_order if w in quantiles.index]
    for is_odd, colour, name in ((False, "#4c78a8", "wells"), (True, "#d62728", "outlier wells")):
        chosen = [w for w in order if (w in odd.index) == is_odd]
        if not chosen:
            continue
        q = quantiles.loc[chosen]
        figure.add_trace(
            go.Box(
                x=chosen,
                q1=q[0.25],
                median=q[0.5],
                q3=q[0.75],
                lowerfence=q[0.05],
                upperfence=q[0.95],
                marker={"color": colour},
                line={"width": 1},
                name=name,
                showlegend=is_odd,
            ),
            row=1,
            col=2,
        )
    figure.update_layout(
        **_base_layout(
            height=320,
            bargap=0,
            title={"text": f"<b>{column}</b>", "x": 0, "font": {"size": 13}},
            margin={"l": 50, "r": 20, "t": 60, "b": 50},
            legend={"orientation": "h", "y": -0.22, "x": 0},
        )
    )
    figure.update_xaxes(categoryorder="array", categoryarray=order, row=1, col=2, type="category")
    figure.update_yaxes(tickformat=".0%", row=1, col=1, gridcolor="#eee")
    figure.update_yaxes(row=1, col=2, gridcolor="#eee")
    figure.update_annotations(font_size=11)
    return figure, odd


def _bin_edges(values: np.ndarray) -> np.ndarray:
    """Bins over the middle 99% of the values, so one huge object does not squash the rest;
    fewer bins for few objects (about the square root of their number)."""
    if not len(values):
        return np.linspace(0, 1, BINS + 1)
    bins = int(np.clip(np.sqrt(len(values)), 10, BINS))
    low, high = np.percentile(values, [0.5, 99.5])
    if not high > low:
        low, high = float(values.min()) - 0.5, float(values.max()) + 0.5
    return np.linspace(low, high, bins + 1)


def _share(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    counts, _ = np.histogram(np.clip(values, edges[0], edges[-1]), bins=edges)
    return counts / max(1, counts.sum())
