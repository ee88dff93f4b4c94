"""Pictures of a backtest, to judge a strategy by looking at it.

One picture, two media. Price candles with every entry (triangles), exit (crosses, coloured
by the trade's net PnL), the stop and the target each trade carried (dashed, from entry to
exit), the ICT zones the strategy acted on (the fair value gap or order block of each entry,
as a box from the candle that made it to the entry), the liquidity pools swept in the window
(dotted, from the touch that made the pool to the wick that took it); beneath, the equity and
its drawdown from the running peak.

- `FILE.png`: matplotlib, candles resampled to at most `PNG_MAX_CANDLES` (a month of 1m
  candles cannot be told apart on a page anyway); the timeframe is in the title.
- `FILE.html`: plotly, one self-contained file (no network needed to open it). Plotly, because
  it is well kept, draws candlesticks and shared-axis panels natively, and its WebGL traces
  (`Scattergl`) carry tens of thousands of markers and equity points. Candlesticks have no
  WebGL form, so the file holds the candles at every timeframe from 1m to 1d and a small
  script shows, after each pan or zoom, the finest timeframe that keeps at most
  `HTML_MAX_CANDLES` candles in view, sliced to the view: months of 1m data pan and zoom
  without choking, and a zoom into an hour shows its 1m candles.

Both need the optional extra: `pip install -e '.[plot]'`; `check_plot_dependency` says so
before a run starts.
"""

from __future__ import annotations

import importlib.util
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from daemon.adapters.candle_files import load_candles, minute_at_or_after, timeframe_minutes
from daemon.backtest import BacktestInputError, BacktestResult, Trade
from daemon.backtest_simulator import strategy_frames
from daemon.domain.models import Direction, Signal
from strategies.indicators import fair_value_gaps, liquidity, order_blocks

PNG_MAX_CANDLES = 1200
HTML_MAX_CANDLES = 4000
TIMEFRAMES = ("1m", "5m", "15m", "1h", "4h", "1d")
INSTALL_HINT = "pip install -e '.[plot]'"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# The ICT strategy's signal reason names its zone: "retrace into bullish fvg 2500..2510 on 5m"
_ZONE = re.compile(
    r"retrace into (?P<side>bullish|bearish) (?P<kind>fvg|order block) "
    r"(?P<bottom>[-+.\deE]+)\.\.(?P<top>[-+.\deE]+) on (?P<tf>\w+)"
)
_MEDIA = {".png": ("matplotlib", "a PNG"), ".html": ("plotly", "an interactive HTML page")}


def check_plot_dependency(path: Path) -> None:
    """Refuse, before any work, a --plot the run could not write: an unknown file type or a
    charting library that is not installed (with the command that installs it)."""
    suffix = path.suffix.lower()
    if suffix not in _MEDIA:
        raise BacktestInputError(f"--plot {path}: name a .png or an .html file")
    module, what = _MEDIA[suffix]
    if importlib.util.find_spec(module) is None:
        raise BacktestInputError(
            f"--plot {path} draws {what} with {module}, which is not installed: "
            f"{INSTALL_HINT} (from the repository's folder; the README's command)"
        )


@dataclass(frozen=True, slots=True)
class Zone:
    kind: str  # "fvg" | "order block"
    direction: int  # +1 bullish, -1 bearish
    bottom: float
    top: float
    start: datetime  # open of the candle that made it
    end: datetime  # the entry that acted on it


@dataclass(frozen=True, slots=True)
class Sweep:
    side: int  # +1 buy-side (above equal highs), -1 sell-side
    level: float
    start: datetime  # open of the candle whose touch made the pool
    swept: datetime  # open of the candle that took it


@dataclass(frozen=True, slots=True)
class Levels:
    """A trade's stop and target, drawn from its entry to its exit."""

    entry: datetime
    exit: datetime
    stop: float
    take_profit: float


@dataclass(slots=True)
class Picture:
    title: str
    candles: dict[str, pl.DataFrame]  # timeframe -> timestamp, open, high, low, close
    trades: list[Trade]
    levels: list[Levels] = field(default_factory=list)
    zones: list[Zone] = field(default_factory=list)
    sweeps: list[Sweep] = field(default_factory=list)
    equity: list[tuple[datetime, float]] = field(default_factory=list)

    def drawdown(self) -> list[float]:
        """Equity minus its running peak, in USDT (0 or below)."""
        peak = float("-inf")
        out = []
        for _, value in self.equity:
            peak = max(peak, value)
            out.append(value - peak)
        return out

    def coarsest_fitting(self, limit: int) -> str:
        """The finest timeframe with at most `limit` candles over the whole window."""
        for tf in TIMEFRAMES:
            if self.candles[tf].height <= limit:
                return tf
        return TIMEFRAMES[-1]


def write_plot(result: BacktestResult, data_file: Path, path: Path) -> None:
    """Draw `result` over the candles of `data_file` into `path` (.png or .html)."""
    check_plot_dependency(path)
    picture = build_picture(result, data_file)
    if path.suffix.lower() == ".png":
        write_png(picture, path)
    else:
        write_html(picture, path)


def build_picture(result: BacktestResult, data_file: Path) -> Picture:
    data = load_candles(data_file)
    first = (result.start - _EPOCH) // timedelta(minutes=1) - data.first_minute
    last = minute_at_or_after(result.end) - data.first_minute
    window = data.frame.slice(max(0, first), max(0, last - max(0, first)))
    frames = strategy_frames(window, TIMEFRAMES)
    candles = {
        tf: f.select("timestamp", "open", "high", "low", "close") for tf, f in frames.items()
    }
    summary = result.summary()
    title = (
        f"{result.strategy} on {result.symbol}: {summary['trades']} trades, net "
        f"{summary['net_pnl']:.2f} USDT, max drawdown {summary['max_drawdown']:.2f} USDT"
    )
    picture = Picture(title, candles, list(result.trades), equity=list(result.equity))
    signals = dict(result.decisions.entry_signals)
    for trade in result.trades:
        signal = signals.get(trade.entry_time)
        if signal is not None:
            picture.levels.append(
                Levels(
                    trade.entry_time,
                    trade.exit_time,
                    float(signal.stop),
                    float(signal.take_profit),
                )
            )
    # Zones of entries still open at the end count too: they were acted on.
    for when, signal in result.decisions.entry_signals:
        zone = _zone_of(signal, when, window)
        if zone is not None:
            picture.zones.append(zone)
    if result.strategy == "ict":
        picture.sweeps = _sweeps(window, result.params)
    return picture


def _zone_of(signal: Signal, when: datetime, window: pl.DataFrame) -> Zone | None:
    """The zone an ICT entry acted on, with the candle that made it (found by its bounds)."""
    match = _ZONE.search(signal.reason)
    if match is None:
        return None
    bottom, top = float(match["bottom"]), float(match["top"])
    direction = 1 if signal.direction is Direction.LONG else -1
    tf = match["tf"]
    start = when - 10 * timedelta(minutes=timeframe_minutes(tf))
    frame = strategy_frames(window, (tf,))[tf].filter(pl.col("timestamp") < when)
    if match["kind"] == "fvg":
        found = fair_value_gaps(frame).filter(pl.col("fvg") == direction)
        bounds = ("fvg_bottom", "fvg_top")
    else:
        found = order_blocks(frame).filter(pl.col("ob") == direction)
        bounds = ("ob_bottom", "ob_top")
    near = found.filter(
        ((pl.col(bounds[0]) - bottom).abs() <= 1e-9 * abs(bottom))
        & ((pl.col(bounds[1]) - top).abs() <= 1e-9 * abs(top))
    )
    if near.height:
        start = near["timestamp"][-1]
    return Zone(match["kind"], direction, bottom, top, start, when)


def _sweeps(window: pl.DataFrame, params: dict[str, Any]) -> list[Sweep]:
    """Liquidity pools swept inside the window, on the strategy's own timeframe and terms."""
    tf = str(params.get("timeframe", "5m"))
    frame = strategy_frames(window, (tf,))[tf]
    if frame.height < 10:
        return []
    pools = liquidity(
        frame,
        int(params.get("left", 2)),
        int(params.get("right", 2)),
        float(params.get("tolerance", 0.001)),
        int(params.get("min_touches", 2)),
    ).filter(pl.col("liquidity").is_not_null() & pl.col("swept_at").is_not_null())
    times = frame["timestamp"].to_list()
    return [
        Sweep(int(side), float(level), times[int(known)], times[int(swept)])
        for side, level, known, swept in pools.select(
            "liquidity", "liquidity_level", "liquidity_known_at", "swept_at"
        ).iter_rows()
    ]


# -- PNG (matplotlib) -------------------------------------------------------------------

GREEN, RED, BLUE, ORANGE, PURPLE, GREY = (
    "#26a69a",
    "#ef5350",
    "#1e88e5",
    "#fb8c00",
    "#8e24aa",
    "#555555",
)


def _days(when: datetime) -> float:
    """matplotlib's date number: days since its default epoch, 1970-01-01 UTC."""
    return (when - _EPOCH) / timedelta(days=1)


def write_png(picture: Picture, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = png_figure(picture)
    try:
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)


def png_figure(picture: Picture) -> Any:
    """The matplotlib figure: price with trades, zones and sweeps; equity; drawdown."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection, PatchCollection
    from matplotlib.patches import Rectangle

    tf = picture.coarsest_fitting(PNG_MAX_CANDLES)
    bars = picture.candles[tf]
    width = timeframe_minutes(tf) / 1440 * 0.7
    fig, (price, equity, drawdown) = plt.subplots(
        3, 1, figsize=(16, 10), dpi=100, sharex=True, gridspec_kw={"height_ratios": [6, 2, 1.5]}
    )
    x = [_days(t) + width / 1.4 / 2 for t in bars["timestamp"].to_list()]
    opens, closes = bars["open"].to_list(), bars["close"].to_list()
    colours = [GREEN if c >= o else RED for o, c in zip(opens, closes, strict=True)]
    price.vlines(x, bars["low"].to_list(), bars["high"].to_list(), colors=colours, linewidth=0.6)
    price.bar(
        x,
        [max(abs(c - o), 1e-9) for o, c in zip(opens, closes, strict=True)],
        width,
        [min(o, c) for o, c in zip(opens, closes, strict=True)],
        color=colours,
        linewidth=0,
    )
    boxes = [
        Rectangle(
            (_days(z.start), z.bottom),
            _days(z.end) - _days(z.start),
            z.top - z.bottom,
            facecolor=BLUE if z.kind == "fvg" else ORANGE,
        )
        for z in picture.zones
    ]
    if boxes:
        price.add_collection(PatchCollection(boxes, match_original=True, alpha=0.3, zorder=1))
    price.plot([], [], color=BLUE, alpha=0.4, linewidth=6, label="fair value gap acted on")
    price.plot([], [], color=ORANGE, alpha=0.4, linewidth=6, label="order block acted on")
    if picture.sweeps:
        price.add_collection(
            LineCollection(
                [((_days(s.start), s.level), (_days(s.swept), s.level)) for s in picture.sweeps],
                colors=PURPLE,
                linestyles="dotted",
                linewidths=0.9,
            )
        )
        price.scatter(
            [_days(s.swept) for s in picture.sweeps],
            [s.level for s in picture.sweeps],
            marker="x",
            color=PURPLE,
            s=14,
            label="liquidity swept",
        )
    for attr, colour, label in (("stop", RED, "stop"), ("take_profit", GREEN, "target")):
        segments = [
            ((_days(v.entry), getattr(v, attr)), (_days(v.exit), getattr(v, attr)))
            for v in picture.levels
        ]
        if segments:
            price.add_collection(
                LineCollection(segments, colors=colour, linestyles="dashed", linewidths=0.9)
            )
        price.plot([], [], color=colour, linestyle="dashed", label=label)
    for side, marker, colour in (("long", "^", GREEN), ("short", "v", RED)):
        chosen = [t for t in picture.trades if t.side == side]
        price.scatter(
            [_days(t.entry_time) for t in chosen],
            [float(t.entry_price) for t in chosen],
            marker=marker,
            color=colour,
            edgecolors="black",
            linewidths=0.4,
            s=40,
            zorder=3,
            label=f"{side} entry",
        )
    for won, colour in ((True, GREEN), (False, RED)):
        chosen = [t for t in picture.trades if (t.net_pnl > 0) == won]
        price.scatter(
            [_days(t.exit_time) for t in chosen],
            [float(t.exit_price) for t in chosen],
            marker="x",
            color=colour,
            s=36,
            zorder=3,
            label="exit, won" if won else "exit, lost",
        )
    price.set_title(f"{picture.title}  (candles: {tf})")
    price.set_ylabel("price (USDT)")
    price.legend(loc="upper left", fontsize=8, ncol=3)
    price.grid(True, alpha=0.25)
    times = [_days(t) for t, _ in picture.equity]
    equity.plot(times, [v for _, v in picture.equity], color=BLUE, linewidth=1.0)
    equity.set_ylabel("equity (USDT)")
    equity.grid(True, alpha=0.25)
    drawdown.fill_between(times, picture.drawdown(), 0, color=RED, alpha=0.4, linewidth=0)
    drawdown.set_ylabel("drawdown (USDT)")
    drawdown.grid(True, alpha=0.25)
    drawdown.xaxis_date()
    fig.autofmt_xdate()
    fig.tight_layout()
    return fig


# -- HTML (plotly) ----------------------------------------------------------------------

_RESAMPLE_JS = """
(function () {
  var gd = document.getElementById('{plot_id}');
  var tfs = JSON.parse(document.getElementById('{plot_id}-candles').textContent);
  var limit = %(limit)d, busy = false;
  function pick(lo, hi) {
    for (var i = 0; i < tfs.length; i++) {
      var c = tfs[i], a = 0, b = c.x.length;
      if (lo !== null) { a = bisect(c.x, lo); b = bisect(c.x, hi); }
      if (b - a <= limit || i === tfs.length - 1) { return [c, a, b]; }
    }
  }
  function bisect(xs, t) {
    var lo = 0, hi = xs.length;
    while (lo < hi) { var mid = (lo + hi) >> 1; if (xs[mid] < t) lo = mid + 1; else hi = mid; }
    return lo;
  }
  function show(lo, hi) {
    var p = pick(lo, hi), c = p[0], a = Math.max(0, p[1] - 1), b = p[2] + 1;
    busy = true;
    Plotly.restyle(gd, {x: [c.x.slice(a, b)], open: [c.o.slice(a, b)], high: [c.h.slice(a, b)],
      low: [c.l.slice(a, b)], close: [c.c.slice(a, b)], name: ['candles ' + c.tf]}, [0])
      .then(function () { busy = false; });
  }
  gd.on('plotly_relayout', function (e) {
    if (busy) return;
    var lo = e['xaxis.range[0]'], hi = e['xaxis.range[1]'];
    if (lo === undefined && e['xaxis.range']) {
      lo = e['xaxis.range'][0]; hi = e['xaxis.range'][1];
    }
    if (e['xaxis.autorange'] || lo === undefined) { show(null, null); return; }
    show(String(lo).replace(' ', 'T'), String(hi).replace(' ', 'T'));
  });
})();
"""


def _iso(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S")


def html_figure(picture: Picture) -> Any:
    """The plotly figure: the same panels as the PNG, WebGL where there are many points."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(
        rows=3,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.03,
        row_heights=[0.62, 0.23, 0.15],
        subplot_titles=("", "equity (USDT)", "drawdown (USDT)"),
    )
    tf = picture.coarsest_fitting(HTML_MAX_CANDLES)
    bars = picture.candles[tf]
    fig.add_trace(
        go.Candlestick(
            x=[_iso(t) for t in bars["timestamp"].to_list()],
            open=bars["open"].to_list(),
            high=bars["high"].to_list(),
            low=bars["low"].to_list(),
            close=bars["close"].to_list(),
            name=f"candles {tf}",
            increasing_line_color=GREEN,
            decreasing_line_color=RED,
        ),
        row=1,
        col=1,
    )
    for kind, colour, label in (
        ("fvg", BLUE, "fair value gaps acted on"),
        ("order block", ORANGE, "order blocks acted on"),
    ):
        xs: list[str | None] = []
        ys: list[float | None] = []
        for z in picture.zones:
            if z.kind == kind:
                a, b = _iso(z.start), _iso(z.end)
                xs += [a, b, b, a, a, None]
                ys += [z.bottom, z.bottom, z.top, z.top, z.bottom, None]
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                fill="toself",
                mode="lines",
                line={"width": 0.5, "color": colour},
                opacity=0.35,
                name=label,
                hoverinfo="skip",
            ),
            row=1,
            col=1,
        )
    sx: list[str | None] = []
    sy: list[float | None] = []
    for s in picture.sweeps:
        sx += [_iso(s.start), _iso(s.swept), None]
        sy += [s.level, s.level, None]
    fig.add_trace(
        go.Scattergl(
            x=sx, y=sy, mode="lines", line={"color": PURPLE, "dash": "dot"}, name="liquidity swept"
        ),
        row=1,
        col=1,
    )
    for attr, colour, label in (("stop", RED, "stops"), ("take_profit", GREEN, "targets")):
        lx: list[str | None] = []
        ly: list[float | None] = []
        for v in picture.levels:
            lx += [_iso(v.entry), _iso(v.exit), None]
            ly += [getattr(v, attr), getattr(v, attr), None]
        fig.add_trace(
            go.Scattergl(
                x=lx, y=ly, mode="lines", line={"color": colour, "dash": "dash"}, name=label
            ),
            row=1,
            col=1,
        )
    for side, symbol, colour in (("long", "triangle-up", GREEN), ("short", "triangle-down", RED)):
        chosen = [t for t in picture.trades if t.side == side]
        fig.add_trace(
            go.Scattergl(
                x=[_iso(t.entry_time) for t in chosen],
                y=[float(t.entry_price) for t in chosen],
                mode="markers",
                marker={"symbol": symbol, "size": 10, "color": colour, "line": {"width": 1}},
                name=f"{side} entries",
                text=[f"{t.side} {t.qty} @ {t.entry_price}" for t in chosen],
            ),
            row=1,
            col=1,
        )
    fig.add_trace(
        go.Scattergl(
            x=[_iso(t.exit_time) for t in picture.trades],
            y=[float(t.exit_price) for t in picture.trades],
            mode="markers",
            marker={
                "symbol": "x",
                "size": 9,
                "color": [GREEN if t.net_pnl > 0 else RED for t in picture.trades],
            },
            name="exits",
            text=[f"{t.exit_reason}: net {float(t.net_pnl):.2f} USDT" for t in picture.trades],
        ),
        row=1,
        col=1,
    )
    times = [_iso(t) for t, _ in picture.equity]
    fig.add_trace(
        go.Scattergl(
            x=times,
            y=[v for _, v in picture.equity],
            mode="lines",
            line={"color": BLUE, "width": 1},
            name="equity",
        ),
        row=2,
        col=1,
    )
    fig.add_trace(
        go.Scattergl(
            x=times,
            y=picture.drawdown(),
            mode="lines",
            fill="tozeroy",
            line={"color": RED, "width": 1},
            name="drawdown",
        ),
        row=3,
        col=1,
    )
    fig.update_layout(
        title=picture.title,
        xaxis_rangeslider_visible=False,
        dragmode="pan",
        hovermode="x",
        height=900,
        legend={"orientation": "h", "y": 1.04},
        template="plotly_white",
    )
    return fig


def write_html(picture: Picture, path: Path) -> None:
    fig = html_figure(picture)
    div_id = "tradectl-backtest"
    series = [
        {
            "tf": tf,
            "x": [_iso(t) for t in frame["timestamp"].to_list()],
            "o": frame["open"].to_list(),
            "h": frame["high"].to_list(),
            "l": frame["low"].to_list(),
            "c": frame["close"].to_list(),
        }
        for tf, frame in picture.candles.items()
        if frame.height
    ]
    html = fig.to_html(
        include_plotlyjs=True,
        full_html=True,
        div_id=div_id,
        config={"scrollZoom": True, "displaylogo": False},
        post_script=_RESAMPLE_JS % {"limit": HTML_MAX_CANDLES},
    )
    blob = json.dumps(series, separators=(",", ":")).replace("</", "<\\/")
    data = f'<script type="application/json" id="{div_id}-candles">{blob}</script>'
    path.write_text(html.replace("<body>", "<body>\n" + data, 1))
