"""Serving on the shared cluster, over real HTTP: a registered model version is deployed with
``python -m serve_apps.deploy`` (token auth, API key), then predicted, given feedback, attacked
with bad input, and swapped under concurrent load without losing a request.

The version is built without Ray (``tests/versions.py``: real weights, preprocessor and detectors,
as the training job stages them; training itself is the pipeline and training tests' subject).
The application is removed at module end; Serve stays up on the session's port (``serve_port``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from safetensors.torch import load_file, save_file

from foundry import config
from foundry.datasets import generate
from foundry.models.predictor import PREPROCESSOR_FILE, SPEC_FILE, WEIGHTS_FILE
from foundry.registry import Registry
from foundry.serving import control
from foundry.serving.feedback import read_feedback
from tests import replicas as serve_replicas
from tests.conftest import REPO_ROOT
from tests.versions import register_version

MODEL = "serve-it"
APP = "foundry-it"
KEY = "integration-key-" + "fGJQXMXi3lVjLKEVPR6JeqeZ"
AUTH = {"X-API-Key": KEY}
LABELS = ("churned", "customer_id", "segment", "lifetime_value")


def _register_variant(reg: Registry, version: str, where: Path, bias: float | None = None) -> str:
    """A new version from ``version``'s files: shifted output bias, or unreadable weights (bias None)."""
    src = reg.fetch(MODEL, version)
    where.mkdir(parents=True)
    for name in (SPEC_FILE, PREPROCESSOR_FILE):
        (where / name).write_bytes((src / name).read_bytes())
    if bias is None:
        (where / WEIGHTS_FILE).write_bytes(b"this is not a safetensors file")
    else:
        weights = load_file(str(src / WEIGHTS_FILE))
        last = sorted(k for k in weights if k.endswith(".bias"))[-1]
        weights[last] = weights[last] + bias
        save_file(weights, str(where / WEIGHTS_FILE))
    return reg.register(MODEL, where, {"variant_of": version}).version


@pytest.fixture(scope="module")
def served(ray_cluster, serve_port, tmp_path_factory):
    port = serve_port
    overrides = [*ray_cluster.overrides, f"ray.address={ray_cluster.address}", f"model_name={MODEL}",
                 f"serve.app_name={APP}", f"serve.route_prefix=/{APP}", f"serve.http.port={port}",
                 "serve.autoscaling.min_replicas=2", "serve.autoscaling.initial_replicas=2",
                 "serve.autoscaling.max_replicas=2", "serve.num_cpus=0.5", "serve.access_log=false"]
    cfg = config.load(overrides)
    registry = cfg.storage.layout.open_registry()
    v1 = register_version(registry, cfg, tmp_path_factory.mktemp("serve-v1"))

    env = {**os.environ, "FOUNDRY_API_KEY": KEY}
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "serve_apps.deploy", *overrides], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    deploy_s = time.monotonic() - started
    url = f"http://127.0.0.1:{port}/{APP}"
    assert url in proc.stdout

    frame = generate("churn", "baseline", 200, seed=7)
    rows = json.loads(frame.drop(columns=list(LABELS)).to_json(orient="records"))
    client = httpx.Client(base_url=url, timeout=30)
    try:
        yield {"cfg": cfg, "overrides": overrides, "url": url, "client": client, "rows": rows, "env": env,
               "v1": v1, "registry": registry,
               "deploy_s": deploy_s, "port": port}
    finally:
        client.close()
        from foundry.serving import control

        control.delete_app(APP, wait=False)


def _predict(served, rows, headers=AUTH) -> httpx.Response:
    return served["client"].post("/predict", json={"rows": rows}, headers=headers)


def test_deploy_is_quick_and_both_replicas_serve_the_trained_version(served):
    assert served["deploy_s"] < 120
    replicas = serve_replicas.answers(APP)
    assert len(replicas) == 2
    assert {r["version"] for r in replicas.values()} == {served["v1"]}


def test_predict_one_row(served):
    r = _predict(served, served["rows"][:1])
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == MODEL and body["model_version"] == served["v1"]
    (pred,) = body["predictions"]
    assert pred["prediction"] in ("0", "1") and len(pred["request_id"]) == 32
    assert abs(sum(pred["probabilities"].values()) - 1) < 1e-5 and pred["model_version"] == served["v1"]


def test_predict_many_rows(served):
    r = _predict(served, served["rows"][:100])
    assert r.status_code == 200, r.text
    preds = r.json()["predictions"]
    assert len(preds) == 100 and len({p["request_id"] for p in preds}) == 100
    assert {p["model_version"] for p in preds} == {served["v1"]}
    # A trained model, not noise: its predictions vary with the input.
    assert len({round(p["probabilities"]["1"], 3) for p in preds}) > 20


def test_model_and_health(served):
    health = served["client"].get("/healthz")
    assert health.status_code == 200 and health.json()["model_version"] == served["v1"]
    info = served["client"].get("/model", headers=AUTH).json()
    assert info["model"] == MODEL and info["version"] == served["v1"] and info["ref"] == "production"
    assert info["metadata"]["metrics"]["roc_auc"] > 0.6
    assert info["last_swap_error"] is None
    assert info["device"] == "cpu"  # serve.use_gpu=false
    spec = served["client"].get("/openapi.json").json()
    assert "tenure_months" in json.dumps(spec) and "/predict" in spec["paths"]


def test_feedback_reaches_storage(served):
    preds = _predict(served, served["rows"][:5]).json()["predictions"]
    labels = [{"request_id": p["request_id"], "label": int(p["prediction"])} for p in preds]
    r = served["client"].post("/feedback", json={"labels": labels}, headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": 5, "model": MODEL, "corrections": 0}
    stored = read_feedback(served["cfg"].storage.root, MODEL)
    assert set(stored["request_id"]) >= {p["request_id"] for p in preds}


def test_labels_need_provenance_on_real_serve(served):
    """Through the real proxy and replicas, with the model's ledger actor: a forged id is refused (404),
    a second label is refused (409), and neither is stored."""
    rid = _predict(served, served["rows"][:1]).json()["predictions"][0]["request_id"]
    post = lambda labels: served["client"].post("/feedback", json={"labels": labels}, headers=AUTH)  # noqa: E731
    forged = uuid.uuid4().hex
    r = post([{"request_id": forged, "label": 1}])
    assert r.status_code == 404 and r.json()["error"] == "unknown_request_id", r.text
    assert post([{"request_id": rid, "label": 1}]).status_code == 200  # right after the answer: no race
    again = post([{"request_id": rid, "label": 0}])
    assert again.status_code == 409 and again.json()["error"] == "repeated_label", again.text
    stored = read_feedback(served["cfg"].storage.root, MODEL)
    assert forged not in set(stored["request_id"]) and stored.loc[stored["request_id"] == rid, "label"].tolist() == ["1"]


@pytest.mark.parametrize(("method", "path"), [("POST", "/predict"), ("POST", "/feedback"), ("GET", "/model")])
def test_auth(served, method, path):
    client = served["client"]
    assert client.request(method, path, json={}).status_code == 401
    assert client.request(method, path, json={}, headers={"X-API-Key": "wrong-key-wrong-key"}).status_code == 403
    assert client.get("/healthz").status_code == 200


def _bad_bodies(served) -> list[tuple[str, bytes, int, str]]:
    row = served["rows"][0]

    def with_row(**change):
        r = dict(row)
        for k, v in change.items():
            if v is KeyError:
                r.pop(k)
            else:
                r[k] = v
        return json.dumps({"rows": [r]}).encode()

    return [
        ("missing field", with_row(age=KeyError), 422, "rows[0].age"),
        ("extra field", with_row(height=180), 422, "rows[0].height"),
        ("wrong type", with_row(age="old"), 422, "rows[0].age"),
        ("NaN", with_row(age=0).replace(b'"age": 0', b'"age": NaN'), 422, "rows[0].age"),
        ("Infinity", with_row(age=0).replace(b'"age": 0', b'"age": Infinity'), 422, "rows[0].age"),
        ("out of range", with_row(monthly_charges=10**9), 422, "rows[0].monthly_charges"),
        ("unknown category", with_row(contract="lifetime"), 422, "rows[0].contract"),
        ("empty list", b'{"rows": []}', 422, "rows"),
        ("too many rows", json.dumps({"rows": [row] * 1001}).encode(), 413, "rows"),
        ("too large body", b'{"rows": [' + b" " * 1_100_000 + b"]}", 413, "body"),
        ("malformed JSON", b'{"rows": [{"age": 4', 400, "body"),
        ("not JSON at all", b"\xff\xfe garbage", 400, "body"),
    ]


def test_every_bad_input_is_a_4xx_naming_the_field_and_replicas_survive(served):
    before = {rid: info["pid"] for rid, info in serve_replicas.answers(APP).items()}
    for name, body, status, field in _bad_bodies(served):
        r = served["client"].post("/predict", content=body, headers={**AUTH, "content-type": "application/json"})
        assert r.status_code == status, f"{name}: {r.status_code} {r.text[:300]}"
        payload = r.json()
        assert payload["problems"][0]["field"] == field, f"{name}: {payload}"
        assert field in payload["message"] or field == "body", f"{name}: {payload}"
    assert served["client"].get("/healthz").status_code == 200
    assert _predict(served, served["rows"][:3]).status_code == 200
    after = {rid: info["pid"] for rid, info in serve_replicas.answers(APP).items()}
    assert after == before  # same replicas, same processes: nothing crashed or restarted


def _load(served, stop: threading.Event, results: list) -> None:
    with httpx.Client(base_url=served["url"], timeout=30) as client:
        i = 0
        while not stop.is_set():
            rows = served["rows"][i % 50: i % 50 + 1 + i % 3]
            i += 1
            try:
                r = client.post("/predict", json={"rows": rows}, headers=AUTH)
                body = r.json() if r.status_code == 200 else r.text
            except httpx.HTTPError as exc:
                results.append(("error", repr(exc)))
                continue
            results.append((r.status_code, body))


def test_swap_under_concurrent_load_loses_no_request(served, tmp_path):
    v1 = served["v1"]
    before = {rid: info["pid"] for rid, info in serve_replicas.answers(APP).items()}
    stop, results = threading.Event(), []
    with ThreadPoolExecutor(max_workers=6) as pool:
        futures = [pool.submit(_load, served, stop, results) for _ in range(6)]
        time.sleep(1.5)
        v2 = _register_variant(served["registry"], v1, tmp_path / "v2", bias=0.75)
        version = control.set_model_version(APP, v2, served["cfg"].data)
        time.sleep(1.5)
        stop.set()
        for f in futures:
            f.result()
    assert version == v2
    failed = [r for r in results if r[0] != 200]
    assert not failed, failed[:5]
    versions = Counter()
    for _, body in results:
        row_versions = {p["model_version"] for p in body["predictions"]}
        assert row_versions == {body["model_version"]}, body  # never a mix within a response
        versions[body["model_version"]] += 1
    assert set(versions) <= {v1, v2} and versions[v1] > 0 and versions[v2] > 0, versions
    assert len(results) > 50
    # Afterwards: only the new version, from the same (not restarted) replicas.
    for _ in range(20):
        assert _predict(served, served["rows"][:2]).json()["model_version"] == v2
    replicas = serve_replicas.answers(APP)
    assert {r["version"] for r in replicas.values()} == {v2}
    assert {rid: info["pid"] for rid, info in replicas.items()} == before
    served["v2"] = v2


def test_swap_to_a_broken_or_missing_version_keeps_serving(served, tmp_path):
    current = served.get("v2") or served["v1"]
    broken = _register_variant(served["registry"], served["v1"], tmp_path / "broken", bias=None)
    # The preflight load refuses it before any replica is touched.
    with pytest.raises(Exception, match="safetensors|header|Error"):
        control.set_model_version(APP, broken, served["cfg"].data)
    # Forced through, each replica fails to load it, keeps its model and reports why.
    control.set_model_version(APP, broken, served["cfg"].data, preflight_load=False)
    replicas = serve_replicas.answers(APP)
    assert {r["version"] for r in replicas.values()} == {current}
    for info in replicas.values():
        assert info["last_swap_error"]["version"] == broken
        assert info["last_swap_error"]["kept_version"] == current
    assert _predict(served, served["rows"][:2]).json()["model_version"] == current
    # A version id that does not exist at all.
    missing = "v20990101-000000-000-abcdef"
    spec = control.current_user_config(APP)
    control.apply_user_config(APP, {**spec, "ref": missing, "version": missing})
    replicas = serve_replicas.answers(APP)
    assert {r["version"] for r in replicas.values()} == {current}
    assert all("no version or alias" in r["last_swap_error"]["error"] for r in replicas.values())
    assert _predict(served, served["rows"][:2]).status_code == 200


def test_redeploy_with_another_model_ref_swaps_in_place(served):
    """The CLI path: `python -m serve_apps.deploy serve.model_ref=<v>` changes only user_config."""
    before = {rid: info["pid"] for rid, info in serve_replicas.answers(APP).items()}
    proc = subprocess.run([sys.executable, "-m", "serve_apps.deploy", *served["overrides"],
                           f"serve.model_ref={served['v1']}"], cwd=REPO_ROOT, env=served["env"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    replicas = serve_replicas.answers(APP)
    assert {r["version"] for r in replicas.values()} == {served["v1"]}
    assert all(r["last_swap_error"] is None for r in replicas.values())
    assert {rid: info["pid"] for rid, info in replicas.items()} == before


def test_custom_metrics_are_exported(served, ray_cluster):
    """Predictions by version, rejections by reason, batch sizes and the served version with its test
    metrics reach the nodes' metrics endpoints, under the exact names and with only the labels the
    Grafana dashboard's test assumes (tests/unit/test_grafana_dashboard.py: declared tags plus Ray's)."""
    import ray

    from tests.unit.test_grafana_dashboard import exported_series

    ports = {n["MetricsExportPort"] for n in ray.nodes() if n.get("Alive") and n.get("MetricsExportPort")}
    wanted = ("ray_foundry_predictions_total", "ray_foundry_rejected_requests_total",
              "ray_foundry_batch_requests_bucket", "ray_foundry_served_version", "ray_foundry_model_test_metric")
    deadline = time.monotonic() + 60
    text = ""
    while time.monotonic() < deadline:
        _predict(served, served["rows"][:1])
        assert _predict(served, served["rows"][:1], headers={}).status_code == 401  # a rejection to count
        text = ""
        for port in ports:
            try:
                text += httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            except httpx.HTTPError:
                continue
        if all(f"\n{w}{{" in text for w in wanted):
            break
        time.sleep(2)
    for w in wanted:
        assert f"\n{w}{{" in text, f"{w} not exported yet"
    assert 'reason="unauthorized"' in text and f'model_version="{served["v1"]}"' in text
    assert 'role="champion"' in text
    declared = exported_series()
    for line in text.splitlines():
        if not line.startswith("ray_foundry_"):
            continue
        name, labels = line.split("{", 1)
        assert name in declared, f"scraped {name}, which the dashboard test does not know"
        keys = set(re.findall(r'(\w+)="', labels.rsplit("}", 1)[0]))
        assert keys <= declared[name], f"{name} carries labels the dashboard test does not know: {keys - declared[name]}"


def test_written_config_matches_what_is_deployed(served):
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "serve.yaml"
        proc = subprocess.run([sys.executable, "-m", "serve_apps.deploy", *served["overrides"], "--write", str(out)],
                              cwd=REPO_ROOT, env=served["env"], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
        import yaml

        written = yaml.safe_load(out.read_text())
    assert KEY not in out.name and KEY not in json.dumps(written)
    (app,) = written["applications"]
    assert app["name"] == APP and app["deployments"][0]["user_config"]["model"] == MODEL
