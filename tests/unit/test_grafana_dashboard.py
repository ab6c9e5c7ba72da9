"""The shipped Grafana dashboard charts what the code exports, by the names and labels Prometheus scrapes.

Every panel's PromQL is evaluated against the metric declarations in the code (read with ``ast``, so no
Ray is needed): each selected series must be one Ray really exports for a declared metric, and every
label a query uses (``by``/``without``/``on``/``ignoring`` lists, ``{label="..."}`` matchers, the
``{{label}}`` of a legend) must be one that series carries. A panel that groups by a label the metric
lacks merges every series into one (the predictions panel once grouped by ``version`` while the label
was ``model_version``: versions merged exactly during a roll-out), and a counter charted without the
``_total`` suffix Ray adds charts nothing.

What Ray 2.60 adds was checked in its source and by scraping a node's metrics endpoint:
- ``ray/util/metrics.py`` + ``ray/_private/telemetry/open_telemetry_metric_recorder.py``: the exporter
  prefixes ``ray_``; a Counter becomes a Prometheus counter, scraped with ``_total``; a Histogram
  gives ``_bucket`` (with ``le``), ``_sum`` and ``_count``;
- every series carries the core worker's global tags (``Component``, ``NodeAddress``, ``SessionName``,
  ``Version``, ``WorkerId``; no ``JobId``) and OpenTelemetry's ``otel_scope_*`` labels;
- ``ray/serve/metrics.py`` adds ``deployment``, ``replica`` and ``application`` to a replica's metrics;
- Prometheus adds ``instance`` and ``job`` when it scrapes.
"""

from __future__ import annotations

import ast
import difflib
import json
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "cluster" / "grafana" / "foundry_dashboard.json"
CODE_DIRS = ("foundry", "serve_apps", "jobs")

RAY_GLOBAL_LABELS = frozenset({"Component", "NodeAddress", "SessionName", "Version", "WorkerId",
                               "otel_scope_name", "otel_scope_version", "otel_scope_schema_url"})
SCRAPE_LABELS = frozenset({"instance", "job"})
SERVE_LABELS = frozenset({"deployment", "replica", "application"})
METRIC_MODULES = {"ray.util.metrics": False, "ray.serve.metrics": True}  # module -> adds SERVE_LABELS
KINDS = {"Counter": "counter", "Gauge": "gauge", "Histogram": "histogram"}
# Ray's own metrics the dashboard charts: name -> (kind, tag keys), as Ray 2.60 declares them in
# ray/serve/_private/request_ingress_metrics.py (f"serve_{protocol_name}_request_latency_ms", protocol http).
RAY_OWN = {"serve_http_request_latency_ms": ("histogram", frozenset({"method", "route", "application", "status_code"}))}

AGGREGATORS = frozenset({"sum", "min", "max", "avg", "count", "group", "stddev", "stdvar", "topk", "bottomk",
                         "quantile", "count_values"})
GROUPING = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
KEYWORDS = GROUPING | frozenset({"bool", "and", "or", "unless", "offset", "inf", "nan"})
TOKEN = re.compile(r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\')|(?P<range>\[[^\]]*\])'
                   r'|(?P<num>\d+(?:\.\d+)?)|(?P<id>[A-Za-z_:][A-Za-z0-9_:]*)|(?P<op>=~|!~|!=|==|>=|<=|[-+*/^%<>=(){},]))')


@dataclass(frozen=True)
class Declared:
    name: str
    kind: str
    tag_keys: frozenset[str]
    serve: bool
    source: str

    def series(self) -> dict[str, frozenset[str]]:
        """What Prometheus scrapes for this declaration: series name -> its labels."""
        labels = self.tag_keys | RAY_GLOBAL_LABELS | SCRAPE_LABELS | (SERVE_LABELS if self.serve else frozenset())
        base = f"ray_{self.name}"
        if self.kind == "counter":
            return {base if base.endswith("_total") else base + "_total": labels}
        if self.kind == "histogram":
            return {base + "_bucket": labels | {"le"}, base + "_sum": labels, base + "_count": labels}
        return {base: labels}


def _metric_modules(tree: ast.Module) -> tuple[dict[str, str], dict[str, str]]:
    """(name -> metrics module, name -> class) bound by the file's imports of Ray's metrics modules."""
    modules, classes = {}, {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                if full in METRIC_MODULES:
                    modules[alias.asname or alias.name] = full
                elif node.module in METRIC_MODULES and alias.name in KINDS:
                    classes[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in METRIC_MODULES and alias.asname:
                    modules[alias.asname] = alias.name
    return modules, classes


def _literal_tags(call: ast.Call, kind: str, where: str) -> frozenset[str]:
    keyword = next((k.value for k in call.keywords if k.arg == "tag_keys"), None)
    position = 3 if kind == "histogram" else 2
    if keyword is None and len(call.args) > position:
        keyword = call.args[position]
    if keyword is None:
        return frozenset()
    value = ast.literal_eval(keyword)  # a literal tuple, or the labels cannot be checked
    assert isinstance(value, tuple) and all(isinstance(v, str) for v in value), f"{where}: tag_keys not a literal"
    return frozenset(value)


def declarations(paths: list[Path]) -> list[Declared]:
    """Every ``Counter``/``Gauge``/``Histogram`` of ``ray.util.metrics`` or ``ray.serve.metrics`` built in ``paths``."""
    found = []
    for path in paths:
        tree = ast.parse(path.read_text(), str(path))
        modules, classes = _metric_modules(tree)
        for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call)):
            f = call.func
            if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id in modules \
                    and f.attr in KINDS:
                module, cls = modules[f.value.id], f.attr
            elif isinstance(f, ast.Name) and f.id in classes:
                module, _, cls = classes[f.id].rpartition(".")
            else:
                continue
            where = f"{path.relative_to(ROOT)}:{call.lineno}"
            name = call.args[0] if call.args else next((k.value for k in call.keywords if k.arg == "name"), None)
            assert isinstance(name, ast.Constant) and isinstance(name.value, str), f"{where}: metric name not a literal"
            found.append(Declared(name.value, KINDS[cls], _literal_tags(call, KINDS[cls], where),
                                  METRIC_MODULES[module], where))
    return found


def code_paths() -> list[Path]:
    return [p for d in CODE_DIRS for p in sorted((ROOT / d).rglob("*.py"))]


def exported_series() -> dict[str, frozenset[str]]:
    """Series name -> labels, for the code's metrics and the Ray metrics the dashboard uses."""
    series: dict[str, frozenset[str]] = {}
    for d in declarations(code_paths()):
        series.update(d.series())
    for name, (kind, tags) in RAY_OWN.items():
        series.update(Declared(name, kind, tags, False, "ray").series())
    return series


# ---- PromQL: the selectors and labels of one expression -------------------------------------------------
@dataclass
class Query:
    selectors: list[tuple[str, dict[str, str]]]  # (series name, {label: value}) per selector
    grouping: list[tuple[int, str, set[str]]]  # (paren depth, by|without|on|..., labels)
    aggregators: list[tuple[int, str]]  # (paren depth, aggregator or function name)


def parse(expr: str) -> Query:
    tokens = [(m.lastgroup, m.group(m.lastgroup)) for m in TOKEN.finditer(expr)]
    assert "".join(t for _, t in tokens) == re.sub(r"\s+", "", expr), f"unparsed text in {expr!r}"
    q, depth, i = Query([], [], []), 0, 0

    def label_list(j: int) -> tuple[set[str], int]:
        assert tokens[j][1] == "(", f"expected a label list in {expr!r}"
        labels, j = set(), j + 1
        while tokens[j][1] != ")":
            if tokens[j][0] == "id":
                labels.add(tokens[j][1])
            j += 1
        return labels, j + 1

    while i < len(tokens):
        kind, text = tokens[i]
        nxt = tokens[i + 1][1] if i + 1 < len(tokens) else None
        if kind == "id" and text in GROUPING:
            if nxt == "(":
                labels, i = label_list(i + 1)
                q.grouping.append((depth, text, labels))
                continue
        elif kind == "id" and text not in KEYWORDS and (nxt == "(" or text in AGGREGATORS):
            q.aggregators.append((depth, text))
        elif kind == "id" and text not in KEYWORDS:
            matchers, i = {}, i + 1
            if nxt == "{":
                i += 1
                while tokens[i][1] != "}":
                    if tokens[i][0] == "id":
                        matchers[tokens[i][1]] = tokens[i + 2][1].strip("\"'")
                        i += 3
                    else:
                        i += 1
                i += 1
            q.selectors.append((text, matchers))
            continue
        elif text == "{":  # a selector with no metric name: {__name__=~"..."}
            raise AssertionError(f"select by the exported name, not {{__name__=...}}: {expr!r}")
        depth += text == "("
        depth -= text == ")"
        i += 1
    return q


def output_labels(q: Query, series: dict[str, frozenset[str]]) -> set[str]:
    """The labels of the expression's result (what a legend can show)."""
    names = [s for s, _ in q.selectors if s in series]
    labels = set.intersection(*(set(series[n]) for n in names)) if names else set()
    outer = [(d, name) for d, name in q.aggregators if name in AGGREGATORS]
    if outer:
        depth = min(d for d, _ in outer)
        clause = [(kind, ls) for d, kind, ls in q.grouping if kind in ("by", "without") and d in (depth, depth + 1)]
        if not clause:
            labels = set()
        elif clause[0][0] == "by":
            labels = set(clause[0][1])
        else:
            labels -= clause[0][1]
    if any(name == "histogram_quantile" for _, name in q.aggregators):
        labels.discard("le")
    return labels


def problems(expr: str, legend: str, series: dict[str, frozenset[str]]) -> list[str]:
    """Everything in one target that names a series or a label Prometheus will not have."""
    q, out = parse(expr), []
    if not q.selectors:
        out.append("selects no series")
    for name, matchers in q.selectors:
        if name not in series:
            out.append(f"{name} is not exported (close: {difflib.get_close_matches(name, series, 3, 0.8)})")
            continue
        out += [f"{name} has no label {label!r}" for label in matchers if label not in series[name]]
    for _, kind, labels in q.grouping:
        for name, _ in q.selectors:
            out += [f"{kind} ({label}): {name} has no such label" for label in sorted(labels - series.get(name, labels))]
    shown = output_labels(q, series)
    out += [f"legend {{{{{label}}}}} is not a label of the result {sorted(shown)}"
            for label in re.findall(r"\{\{\s*(\w+)\s*\}\}", legend) if label not in shown]
    return out


def _targets():
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel["targets"]:
            yield panel, target


# ---- tests ---------------------------------------------------------------------------------------------
def test_dashboard_is_valid_grafana_json():
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] and dash["panels"]
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for p in dash["panels"]:
        assert p["targets"] and all(t["expr"].strip() for t in p["targets"])


def test_the_code_declares_its_metrics_with_literal_names_and_labels():
    found = declarations(code_paths())
    names = [d.name for d in found]
    assert len(names) == len(set(names)), f"a metric declared twice: {sorted(n for n in names if names.count(n) > 1)}"
    by_name = {d.name: d for d in found}
    assert by_name["foundry_predictions"].tag_keys == {"model", "model_version"} and by_name["foundry_predictions"].serve
    assert by_name["foundry_retrains"].kind == "counter" and not by_name["foundry_retrains"].serve
    assert by_name["foundry_batch_rows"].series().keys() == {
        "ray_foundry_batch_rows_bucket", "ray_foundry_batch_rows_sum", "ray_foundry_batch_rows_count"}


def test_every_panel_query_uses_exported_series_and_their_labels():
    series = exported_series()
    failures = [f"panel {panel['title']!r} {target['refId']}: {p}"
                for panel, target in _targets()
                for p in problems(target["expr"], target.get("legendFormat", ""), series)]
    assert not failures, "\n".join(failures)


def test_every_foundry_metric_is_charted():
    """A metric nobody charts is a metric nobody reads: each one has a panel (or is listed here with why)."""
    charted = {name for _, target in _targets() for name, _ in parse(target["expr"]).selectors}
    not_charted = {"foundry_drift_statistic": "per-detector statistics: the p-value panel says the same",
                   "foundry_monitor_rows": "rows the monitor received: read by tests and foundry status",
                   "foundry_monitor_loop_errors": "an alert rule's metric, not a chart's"}
    missing = [d.name for d in declarations(code_paths())
               if d.name not in not_charted and not set(d.series()) & charted]
    assert not missing, f"declared but on no panel: {missing}"


def test_the_checker_catches_a_label_mismatch():
    """The check itself: a query grouping by a label the metric lacks, a legend showing a label the
    result lacks, a counter without ``_total``, a matcher on a missing label all fail."""
    series = exported_series()
    good = "sum by (model, model_version) (rate(ray_foundry_predictions_total[1m]))"
    assert problems(good, "{{model}} {{model_version}}", series) == []
    assert problems(good.replace("model_version", "version"), "{{version}}", series)
    assert problems(good, "{{model}} {{version}}", series)
    assert problems(good.replace("_total", ""), "", series)
    assert problems('ray_foundry_retrains_total{result="x"}', "", series)
    assert problems("histogram_quantile(0.99, sum by (le) (rate(ray_foundry_batch_rows_bucket[5m])))", "{{le}}", series)
    assert problems("sum by (le) (ray_foundry_batch_rows_sum)", "", series)  # le only on _bucket


def test_ray_own_metrics_are_declared_as_the_dashboard_assumes():
    """The Ray metrics a panel uses still carry the labels the panel relies on, in the installed Ray."""
    import importlib.util

    origin = Path(importlib.util.find_spec("ray").origin).parent / "serve" / "_private" / "request_ingress_metrics.py"
    tree = ast.parse(origin.read_text())
    latency = [c for c in ast.walk(tree) if isinstance(c, ast.Call) and isinstance(c.func, ast.Attribute)
               and c.func.attr == "Histogram" and c.args and isinstance(c.args[0], ast.JoinedStr)
               and "_request_latency_ms" in ast.unparse(c.args[0])]
    assert len(latency) == 1
    tags = next(k.value for k in latency[0].keywords if k.arg == "tag_keys")
    assert frozenset(ast.literal_eval(tags)) == RAY_OWN["serve_http_request_latency_ms"][1]


def test_a_model_version_is_labelled_model_version_on_every_metric():
    """One name for one thing: a dashboard joining serving and training series by version needs it."""
    found = declarations(code_paths())
    assert not [d.name for d in found if "version" in d.tag_keys], "use model_version"
    assert all("model_version" in d.tag_keys for d in found
               if d.name in ("foundry_predictions", "foundry_model_test_metric", "foundry_served_version"))


def test_metric_names_follow_prometheus_conventions():
    """Base units in the name (``_seconds``, ``_bytes``, ``_ratio``), no ``_total`` in the code (Ray adds
    it to counters, and only to counters), no unit Prometheus does not use as a base unit."""
    for d in declarations(code_paths()):
        assert re.fullmatch(r"foundry_[a-z0-9_]+", d.name), d
        assert not d.name.endswith("_total"), f"{d.source}: Ray adds _total to a counter's name"
        assert not re.search(r"_(ms|milliseconds|minutes|hours|percent|kb|mb|gb|fraction)$", d.name), \
            f"{d.source}: {d.name}: use base units (seconds, bytes, ratio)"


def test_a_panel_titled_with_quantiles_charts_each_of_them():
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        charted = {float(q) for t in panel["targets"] for q in re.findall(r"histogram_quantile\(([0-9.]+)", t["expr"])}
        for q in re.findall(r"p(\d\d)\b", panel["title"]):
            assert int(q) / 100 in charted, f"panel {panel['title']!r} has no p{q} target"
