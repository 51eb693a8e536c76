"""The coded page of the scheduler's dashboard: straggling, encodings and suspects.

Built the way ``distributed`` builds its own pages: a Bokeh ``DashboardComponent``
registered under ``/individual-coded`` in ``distributed.dashboard.scheduler.applications``,
so it appears in the dashboard's "More..." menu and in ``/individual-plots.json`` (what
the JupyterLab Dask extension lists). Importing :mod:`dask_coded` registers it for every
scheduler started in that process afterwards (a ``LocalCluster``); a scheduler started
from the command line gets it with ``dask scheduler --preload dask_coded.dashboard``
(which also installs the scheduler plugin). Needs ``bokeh`` (the ``dashboard`` extra).

What it shows, refreshed every half second, from the scheduler plugin's records:

* per coded call (the last :data:`CALLS`), each product's compute seconds by worker name,
  finished, released (a straggler: running when the decode started, drawn at that
  moment) or never started (released before it began executing: with several blocks per
  worker, most released block products), and the call's span: when its decode could
  start;
* the encodings resident on the cluster: their code, blocks, workers, most blocks on one
  worker, bytes;
* ``k="auto"``'s re-choices, as its clients post them: the code it ran, the code chosen,
  the fitted straggling rate, and why;
* the workers a checking decode (``verify=``) found returning wrong products;
* a ``CodedShuffle``'s bytes per epoch: what the master sent against what uncoded
  unicasts would, and the bytes between workers.
"""

from __future__ import annotations

from typing import Any

from ._scheduler.records import AUTO_TOPIC, PLUGIN_NAME, SHUFFLE_TOPIC

#: how many recent calls the page plots
CALLS = 30
#: the page's path in the dashboard
PATH = "/individual-coded"


def _name(scheduler, address: str | None) -> str:
    ws = scheduler.workers.get(address) if address else None
    return str(ws.name) if ws is not None else str(address)


def calls_data(scheduler, last: int = CALLS) -> dict:
    """Columns of the products of the ``last`` coded calls the plugin saw: ``call``
    (0 = oldest shown), ``worker`` (name), ``seconds``, ``status`` (``"finished"``;
    ``"released"``: a straggler cut off while it ran; ``"never started"``: released
    before it began executing), ``color``; and ``span_call``/``span`` (when each call's
    decode could start)."""
    plugin = scheduler.plugins.get(PLUGIN_NAME)
    out: dict = {"call": [], "worker": [], "seconds": [], "status": [], "color": [],
                 "span_call": [], "span": []}
    if plugin is None:
        return out
    records = [r for r in plugin.observations.calls.values() if r.finished][-last:]
    for i, record in enumerate(records):
        for worker, seconds in record.finished:
            out["call"].append(i)
            out["worker"].append(_name(scheduler, worker))
            out["seconds"].append(round(float(seconds), 4))
            out["status"].append("finished")
            out["color"].append("#1f77b4")
        censored = record.censored or [0.0] * len(record.released)
        keys = record.released_keys or [None] * len(record.released)
        for worker, seconds, key in zip(record.released, censored, keys):
            # unfinished when the decode started: drawn there (at least that long)
            seconds = max(float(seconds), float(record.span))
            started = key not in record.unstarted
            out["call"].append(i)
            out["worker"].append(_name(scheduler, worker))
            out["seconds"].append(round(float(seconds), 4))
            out["status"].append("released" if started else "never started")
            out["color"].append("#d62728" if started else "#ff7f0e")
        out["span_call"].append(i)
        out["span"].append(round(float(record.span), 4))
    return out


def encodings_data(scheduler) -> dict:
    """Columns of the encodings resident on the cluster (one row per matrix and column
    block): ``matrix`` (its token), ``code`` (what encodes it: scheme, n and k),
    ``blocks``, ``workers``, ``most`` (blocks on the busiest worker), ``bytes``."""
    plugin = scheduler.plugins.get(PLUGIN_NAME)
    out: dict = {"matrix": [], "code": [], "blocks": [], "workers": [], "most": [],
                 "bytes": []}
    if plugin is None:
        return out
    by_matrix: dict = {}
    for block in plugin.pins.blocks.values():
        by_matrix.setdefault(block.matrix, []).append(block)
    for matrix, blocks in sorted(by_matrix.items(), key=lambda kv: str(kv[0])):
        per: dict = {}
        for b in blocks:
            per[b.worker] = per.get(b.worker, 0) + 1
        ts = [scheduler.tasks.get(b.key) for b in blocks]
        out["matrix"].append(str(matrix[0])[:24])
        out["code"].append(next((b.code for b in blocks if b.code), ""))
        out["blocks"].append(len(blocks))
        out["workers"].append(len(per))
        out["most"].append(max(per.values()))
        out["bytes"].append(sum(max(t.nbytes, 0) for t in ts if t is not None))
    return out


def _events(scheduler, topic: str, last: int) -> list[dict]:
    """The last ``last`` events the scheduler kept under ``topic``, each with its
    ``time``."""
    return [{**msg, "time": t} for t, msg in list(scheduler.get_events(topic))[-last:]
            if isinstance(msg, dict)]


def choices_data(scheduler, last: int = 20) -> dict:
    """Columns of ``k="auto"``'s last re-choices (events its clients posted): ``when``
    (seconds ago), ``matrix``, ``calls``, ``code`` (the code it ran), ``chosen``, ``mu``
    (the fitted straggling rate), ``why``."""
    import time

    rows = _events(scheduler, AUTO_TOPIC, last)
    now = time.time()
    return {"when": [round(now - r["time"], 1) for r in rows],
            "matrix": [r.get("matrix", "") for r in rows],
            "calls": [r.get("calls") for r in rows],
            "code": [str(r.get("code")) for r in rows],
            "chosen": [str(r.get("chosen")) for r in rows],
            "mu": [r.get("mu") for r in rows],
            "why": [r.get("why", "") for r in rows]}


def epochs_data(scheduler, last: int = 20) -> dict:
    """Columns of the last ``CodedShuffle`` epochs (events their clients posted):
    ``shuffle``, ``strategy``, ``epoch``, ``master`` (bytes the master sends, measured
    when the shuffle meters them, else planned), ``uncoded`` (one unicast per request),
    ``ratio`` (master / uncoded), ``peer`` (bytes between workers, when metered)."""
    rows = _events(scheduler, SHUFFLE_TOPIC, last)
    master = [r["master_bytes"] if r.get("master_bytes") is not None
              else r["planned_master_bytes"] for r in rows]
    return {"shuffle": [r["shuffle"] for r in rows],
            "strategy": [r["strategy"] for r in rows],
            "epoch": [r["epoch"] for r in rows],
            "master": master,
            "uncoded": [r["unicast_bytes"] for r in rows],
            "ratio": [round(m / r["unicast_bytes"], 3) if r["unicast_bytes"] else None
                      for m, r in zip(master, rows)],
            "peer": [r.get("peer_bytes") for r in rows]}


def suspects_data(scheduler) -> dict:
    """Columns of the suspects table (see :meth:`dask_coded.CodedMatrix.suspects`)."""
    plugin = scheduler.plugins.get(PLUGIN_NAME)
    rows = plugin.quarantine.suspects.report() if plugin is not None else []
    keys = ("name", "worker", "located", "disagreed", "quarantined")
    return {k: [r[k] for r in rows] for k in keys}


def _page():
    """The component class (built on first use: it needs bokeh)."""
    from bokeh.layouts import column
    from bokeh.models import ColumnDataSource, DataTable, Div, HoverTool, TableColumn
    from bokeh.plotting import figure
    from distributed.dashboard.components import DashboardComponent
    from distributed.utils import log_errors

    class CodedPage(DashboardComponent):
        """The coded page (see the module doc)."""

        def __init__(self, scheduler, **kwargs: Any):
            self.scheduler = scheduler
            data = calls_data(scheduler)
            self.spans = ColumnDataSource({"span_call": data.pop("span_call"),
                                           "span": data.pop("span")}, name="coded-spans")
            self.source = ColumnDataSource(data, name="coded-products")
            self.encodings = ColumnDataSource(encodings_data(scheduler),
                                              name="coded-encodings")
            self.suspects = ColumnDataSource(suspects_data(scheduler), name="coded-suspects")
            self.choices = ColumnDataSource(choices_data(scheduler), name="coded-choices")
            self.epochs = ColumnDataSource(epochs_data(scheduler), name="coded-epochs")
            fig = figure(title="Coded products per call: finished (blue), released "
                         "stragglers (red), never started (orange), decode start (black)",
                         x_axis_label="call (most recent right)", y_axis_label="seconds",
                         height=320, sizing_mode="stretch_width", tools="")
            fig.scatter("call", "seconds", color="color", size=7, alpha=0.7,
                        source=self.source, legend_field="status")
            fig.scatter("span_call", "span", marker="dash", color="black", size=16,
                        line_width=2, source=self.spans)
            fig.add_tools(HoverTool(tooltips=[("worker", "@worker"), ("seconds", "@seconds"),
                                              ("status", "@status")]))
            fig.legend.location = "top_left"
            self.figure = fig
            self.encodings_table = DataTable(
                source=self.encodings, height=140, sizing_mode="stretch_width",
                columns=[TableColumn(field=f, title=t) for f, t in (
                    ("matrix", "encoding"), ("code", "code"), ("blocks", "blocks"),
                    ("workers", "workers"),
                    ("most", "most on one worker"), ("bytes", "bytes resident"))])
            self.suspects_table = DataTable(
                source=self.suspects, height=120, sizing_mode="stretch_width",
                columns=[TableColumn(field=f, title=f) for f in (
                    "name", "worker", "located", "disagreed", "quarantined")])
            self.choices_table = DataTable(
                source=self.choices, height=140, sizing_mode="stretch_width",
                columns=[TableColumn(field=f, title=t) for f, t in (
                    ("when", "seconds ago"), ("matrix", "encoding"), ("calls", "at call"),
                    ("code", "code run"), ("chosen", "chosen"), ("mu", "fitted mu"),
                    ("why", "why"))])
            self.epochs_table = DataTable(
                source=self.epochs, height=140, sizing_mode="stretch_width",
                columns=[TableColumn(field=f, title=t) for f, t in (
                    ("shuffle", "shuffle"), ("strategy", "strategy"), ("epoch", "epoch"),
                    ("master", "master bytes"), ("uncoded", "uncoded would send"),
                    ("ratio", "master / uncoded"), ("peer", "peer bytes"))])
            self.root = column(fig, Div(text="<b>Encodings resident</b>"),
                               self.encodings_table,
                               Div(text="<b>k=\"auto\": re-choices</b>"),
                               self.choices_table,
                               Div(text="<b>Workers found returning wrong products</b>"),
                               self.suspects_table,
                               Div(text="<b>Coded shuffle: bytes per epoch</b>"),
                               self.epochs_table, sizing_mode="stretch_width")

        @log_errors
        def update(self):
            data = calls_data(self.scheduler)
            self.spans.data = {"span_call": data.pop("span_call"), "span": data.pop("span")}
            self.source.data = data
            self.encodings.data = encodings_data(self.scheduler)
            self.suspects.data = suspects_data(self.scheduler)
            self.choices.data = choices_data(self.scheduler)
            self.epochs.data = epochs_data(self.scheduler)

    return CodedPage


def register() -> bool:
    """Add the coded page to the dashboard's applications (idempotent); ``False`` when
    bokeh (or distributed's dashboard) cannot be imported."""
    try:
        from distributed.dashboard import scheduler as dashboard
        from distributed.dashboard.components.scheduler import individual_doc
        from toolz import curry
    except ImportError:
        return False
    if PATH not in dashboard.applications:
        dashboard.applications[PATH] = curry(individual_doc)(_page(), 500)
    return True


def dask_setup(scheduler) -> None:
    """``dask scheduler --preload dask_coded.dashboard``: the page, and the scheduler
    plugin it reads."""
    from ._scheduler import FirstKPlugin

    register()
    if PLUGIN_NAME not in scheduler.plugins:
        scheduler.add_plugin(FirstKPlugin())


register()
