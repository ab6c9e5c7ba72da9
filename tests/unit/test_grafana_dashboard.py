"""The shipped Grafana dashboard only charts metrics the code really exports (no rotting panels)."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "cluster" / "grafana" / "foundry_dashboard.json"


def _exported_names() -> set[str]:
    """Every metric name passed to a ray metrics constructor in the code."""
    names = set()
    for path in list((ROOT / "foundry").rglob("*.py")) + list((ROOT / "serve_apps").rglob("*.py")):
        names.update(re.findall(r'(?:Counter|Gauge|Histogram)\(\s*"(foundry_\w+)"', path.read_text()))
    return names


def test_dashboard_is_valid_grafana_json():
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] and dash["panels"]
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for p in dash["panels"]:
        assert p["targets"] and all(t["expr"].strip() for t in p["targets"])


def test_every_foundry_metric_in_the_dashboard_is_exported_by_the_code():
    exported = _exported_names()
    assert exported, "no foundry_* metrics found in the code"
    dash = DASHBOARD.read_text()
    charted = set(re.findall(r"ray_(foundry_[a-z_]+?)(?:_bucket|_total|\(|\"|\b)", dash))
    assert charted, "the dashboard charts no foundry metric"
    assert charted <= exported, f"charted but never exported: {sorted(charted - exported)}"


def _tag_keys() -> dict[str, set[str]]:
    """metric name -> the tag keys its constructor declares."""
    out = {}
    pattern = re.compile(r'(?:Counter|Gauge|Histogram)\(\s*"(foundry_\w+)"((?:(?!(?:Counter|Gauge|Histogram)\().)*?)'
                         r'tag_keys=\(([^)]*)\)', re.S)
    for path in list((ROOT / "foundry").rglob("*.py")) + list((ROOT / "serve_apps").rglob("*.py")):
        for name, _, keys in pattern.findall(path.read_text()):
            out[name] = set(re.findall(r'"(\w+)"', keys))
    return out


def test_every_label_a_panel_groups_by_is_one_the_metric_has():
    """A panel grouping by a label the metric lacks merges every series into one (the predictions panel
    grouped by `version` while the label is `model_version`: versions merged exactly during a roll-out)."""
    keys = _tag_keys()
    assert keys["foundry_predictions"] == {"model", "model_version"}
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel["targets"]:
            expr = target["expr"]
            metrics = set(re.findall(r"ray_(foundry_[a-z_]+?)(?:_bucket|_total|\(|\"|\b)", expr)) & set(keys)
            for group in re.findall(r"by \(([^)]*)\)", expr):
                labels = {g.strip() for g in group.split(",")} - {"le"}
                for m in metrics:
                    assert labels <= keys[m], f"panel {panel['title']!r}: {m} has no label(s) {labels - keys[m]}"


def test_a_model_version_is_labelled_model_version_on_every_metric():
    """One name for one thing: a dashboard joining serving and training series by version needs it."""
    keys = _tag_keys()
    assert not [name for name, tags in keys.items() if "version" in tags], "use model_version"
    assert all("model_version" in keys[m] for m in ("foundry_predictions", "foundry_model_test_metric"))


def test_a_panel_titled_with_quantiles_charts_each_of_them():
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        charted = {float(q) for t in panel["targets"] for q in re.findall(r"histogram_quantile\(([0-9.]+)", t["expr"])}
        for q in re.findall(r"p(\d\d)\b", panel["title"]):
            assert int(q) / 100 in charted, f"panel {panel['title']!r} has no p{q} target"
