"""The serving HTTP app without Ray: every bad-input class answered with a 4xx naming the field,
predictions from a real registry version, feedback storage, and model swaps that never serve a
half-loaded or broken model. The app is the one Serve runs; here it is driven over ASGI."""

from __future__ import annotations

import asyncio
import json
import math
import uuid
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from foundry import config
from foundry.data import preprocessor as prep
from foundry.datasets import generate
from foundry.errors import RegistryError
from foundry.models import build_model, model_spec
from foundry.models.predictor import PREPROCESSOR_FILE, SPEC_FILE, WEIGHTS_FILE
from foundry.serving.app import build_app
from foundry.serving.auth import ApiKeyChecker
from foundry.serving.feedback import read_feedback
from foundry.serving.holder import ModelHolder, ModelSpec
from foundry.serving.metrics import ServingMetrics
from foundry.serving.service import PredictionService

KEY = "unit-test-key-" + "No71vMbtA-SSjUSMKdIESyfZ"
AUTH = {"X-API-Key": KEY}
LABEL_COLUMNS = ("churned", "customer_id", "segment", "lifetime_value")


def _stage_model(cfg, frame, where: Path, seed: int) -> Path:
    """A real (untrained) model version's files: fitted preprocessor, spec, safetensors weights."""
    fitted = prep.fit([prep.partial_stats(frame, cfg.data)], cfg.data)
    spec = model_spec(cfg.model, fitted)
    torch.manual_seed(seed)
    where.mkdir(parents=True)
    save_file(build_model(spec).state_dict(), str(where / WEIGHTS_FILE))
    (where / SPEC_FILE).write_text(json.dumps(spec))
    (where / PREPROCESSOR_FILE).write_text(fitted.to_json())
    return where


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("serving")
    cfg = config.load([f"storage.root={root}"])
    frame = generate("churn", "baseline", 2000, 0)
    reg = cfg.storage.layout.open_registry()
    v1 = reg.register("churn", _stage_model(cfg, frame, root / "stage1", 1), {"metrics": {"roc_auc": 0.5}}).version
    v2 = reg.register("churn", _stage_model(cfg, frame, root / "stage2", 2), {}).version
    broken_dir = _stage_model(cfg, frame, root / "stage3", 3)
    (broken_dir / WEIGHTS_FILE).write_bytes(b"not safetensors")
    broken = reg.register("churn", broken_dir, {}).version
    reg.set_alias("churn", "production", v1)
    rows = frame.drop(columns=list(LABEL_COLUMNS)).head(50)
    return {"root": str(root), "cfg": cfg, "reg": reg, "v1": v1, "v2": v2, "broken": broken,
            "rows": json.loads(rows.to_json(orient="records"))}


class Recorder(ServingMetrics):
    def __init__(self):
        self.rejected_reasons: list[str] = []
        self.rows: dict[str, int] = {}
        self.batches: list[tuple[int, int]] = []

    def rejected(self, reason):
        self.rejected_reasons.append(reason)

    def predictions(self, model, version, rows):
        self.rows[version] = self.rows.get(version, 0) + rows

    def batch(self, requests, rows):
        self.batches.append((requests, rows))


def _service(env, *overrides: str, metrics=None) -> PredictionService:
    cfg = config.load([f"storage.root={env['root']}", *overrides])
    service = PredictionService(cfg.data, cfg.serve, metrics)
    service.swap(ModelSpec(storage_root=env["root"], model="churn", ref="production"))
    return service


def _app(service: PredictionService, key: str | None = KEY):
    return build_app(service.models, service, ApiKeyChecker(key), service.serve.limits.max_body_bytes,
                     service.metrics)


def call(app, method: str, path: str, **kwargs) -> httpx.Response:
    async def go():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://serve") as client:
            return await client.request(method, path, **kwargs)

    return asyncio.run(go())


@pytest.fixture(scope="module")
def served(env):
    metrics = Recorder()
    service = _service(env, metrics=metrics)
    return {"service": service, "app": _app(service), "metrics": metrics}


# ---- predictions -------------------------------------------------------------------------------

def test_predict_one_row(env, served):
    r = call(served["app"], "POST", "/predict", json={"rows": env["rows"][:1]}, headers=AUTH)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "churn" and body["model_version"] == env["v1"]
    (pred,) = body["predictions"]
    assert pred["model_version"] == env["v1"]
    assert pred["prediction"] in ("0", "1")
    assert set(pred["probabilities"]) == {"0", "1"}
    assert math.isclose(sum(pred["probabilities"].values()), 1.0, rel_tol=1e-5)
    assert len(pred["request_id"]) == 32


def test_predict_many_rows_matches_the_predictor(env, served):
    rows = env["rows"][:20]
    r = call(served["app"], "POST", "/predict", json={"rows": rows}, headers=AUTH)
    assert r.status_code == 200, r.text
    preds = r.json()["predictions"]
    assert len(preds) == 20 and len({p["request_id"] for p in preds}) == 20
    import pandas as pd

    direct = served["service"].holder.require().predictor.predict(pd.DataFrame(rows))
    np.testing.assert_allclose([p["probabilities"]["1"] for p in preds], direct.proba[:, 1], rtol=1e-5)


def test_nullable_feature_may_be_null_or_omitted(env, served):
    row = dict(env["rows"][0], data_usage_gb=None)
    row.pop("satisfaction")
    r = call(served["app"], "POST", "/predict", json={"rows": [row]}, headers=AUTH)
    assert r.status_code == 200, r.text


def test_unknown_category_allowed_where_the_schema_allows_it(env, served):
    # payment_method has on_unknown: allow in conf/data/churn.yaml; plan does not.
    row = dict(env["rows"][0], payment_method="crypto")
    assert call(served["app"], "POST", "/predict", json={"rows": [row]}, headers=AUTH).status_code == 200


def test_batch_of_requests_is_answered_by_one_version(env, served):
    service = served["service"]
    before = list(served["metrics"].batches)
    out = service.run_batch([env["rows"][:1], env["rows"][1:4], env["rows"][4:5]])
    assert [len(o["predictions"]) for o in out] == [1, 3, 1]
    assert {p["model_version"] for o in out for p in o["predictions"]} == {env["v1"]}
    assert served["metrics"].batches[len(before):] == [(3, 5)]


# ---- bad input: one 4xx, naming the field ------------------------------------------------------

def _bad(env, mutate):
    row = dict(env["rows"][0])
    mutate(row)
    return {"rows": [env["rows"][1], row]}


BAD_INPUTS = [
    ("missing field", lambda env: _bad(env, lambda r: r.pop("age")), 422, "missing_field", "rows[1].age"),
    ("extra field", lambda env: _bad(env, lambda r: r.update(shoe_size=44)), 422, "extra_field", "rows[1].shoe_size"),
    ("string for a number", lambda env: _bad(env, lambda r: r.update(age="48")), 422, "wrong_type", "rows[1].age"),
    ("bool for a number", lambda env: _bad(env, lambda r: r.update(tenure_months=True)), 422, "wrong_type",
     "rows[1].tenure_months"),
    ("number for a category", lambda env: _bad(env, lambda r: r.update(plan=1.5)), 422, "wrong_type", "rows[1].plan"),
    ("null in a non-nullable field", lambda env: _bad(env, lambda r: r.update(age=None)), 422, "wrong_type",
     "rows[1].age"),
    ("above max", lambda env: _bad(env, lambda r: r.update(age=150)), 422, "out_of_range", "rows[1].age"),
    ("below min", lambda env: _bad(env, lambda r: r.update(monthly_charges=-1)), 422, "out_of_range",
     "rows[1].monthly_charges"),
    ("unknown category", lambda env: _bad(env, lambda r: r.update(plan="platinum")), 422, "unknown_category",
     "rows[1].plan"),
    ("empty rows", lambda env: {"rows": []}, 422, "empty", "rows"),
    ("no rows key", lambda env: {"instances": env["rows"][:1]}, 422, "missing_field", "rows"),
    ("rows not a list", lambda env: {"rows": env["rows"][0]}, 422, "wrong_type", "rows"),
    ("row not an object", lambda env: {"rows": [[1, 2, 3]]}, 422, "wrong_type", "rows[0]"),
    ("body is a list", lambda env: env["rows"][:1], 422, "wrong_type", "body"),
    ("too many rows", lambda env: {"rows": env["rows"][:1] * 1001}, 413, "too_many_rows", "rows"),
]


@pytest.mark.parametrize(("name", "make", "status", "reason", "field"), BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_is_a_4xx_naming_the_field(env, served, name, make, status, reason, field):
    r = call(served["app"], "POST", "/predict", json=make(env), headers=AUTH)
    assert r.status_code == status, r.text
    body = r.json()
    assert body["error"] == reason
    assert body["problems"][0]["field"] == field
    assert field in body["message"]
    assert served["metrics"].rejected_reasons[-1] == reason


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_are_rejected(env, served, literal):
    row = json.dumps(dict(env["rows"][0], age=0)).replace('"age": 0', f'"age": {literal}')
    r = call(served["app"], "POST", "/predict", content=f'{{"rows": [{row}]}}',
             headers={**AUTH, "content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert r.json()["error"] == "not_finite" and r.json()["problems"][0]["field"] == "rows[0].age"


@pytest.mark.parametrize("text", [b'{"rows": [', b"{rows: []}", b"", b"\x00\x01", b"\xff\xfe not utf-8"])
def test_malformed_json_is_400(served, text):
    r = call(served["app"], "POST", "/predict", content=text,
             headers={**AUTH, "content-type": "application/json"})
    assert r.status_code in (400, 422), r.text
    assert r.json()["problems"][0]["field"] == "body"
    if text:
        assert r.status_code == 400 and r.json()["error"] == "malformed_json"


def test_body_over_the_limit_is_413_with_or_without_content_length(env):
    service = _service(env, "serve.limits.max_body_bytes=4096")
    app = _app(service)
    big = {"rows": env["rows"] * 3}
    r = call(app, "POST", "/predict", json=big, headers=AUTH)
    assert r.status_code == 413 and r.json()["error"] == "body_too_large"
    assert "serve.limits.max_body_bytes" in r.json()["message"]

    payload = json.dumps(big).encode()

    async def chunks():  # no Content-Length: the limit must hold while streaming
        for i in range(0, len(payload), 1000):
            yield payload[i:i + 1000]

    r = call(app, "POST", "/predict", content=chunks(), headers={**AUTH, "content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"] == "body_too_large"
    small = call(app, "POST", "/predict", json={"rows": env["rows"][:2]}, headers=AUTH)
    assert small.status_code == 200


def test_service_keeps_answering_after_bad_input(env, served):
    for _name, make, *_ in BAD_INPUTS:
        call(served["app"], "POST", "/predict", json=make(env), headers=AUTH)
    r = call(served["app"], "POST", "/predict", json={"rows": env["rows"][:3]}, headers=AUTH)
    assert r.status_code == 200


# ---- input policies ------------------------------------------------------------------------------

def test_out_of_range_clip_policy_clips(env):
    service = _service(env, "serve.input_policy.out_of_range=clip")
    app = _app(service)
    at_max = call(app, "POST", "/predict", json={"rows": [dict(env["rows"][0], age=100)]}, headers=AUTH).json()
    beyond = call(app, "POST", "/predict", json={"rows": [dict(env["rows"][0], age=1000)]}, headers=AUTH).json()
    assert beyond["predictions"][0]["probabilities"] == pytest.approx(at_max["predictions"][0]["probabilities"])


def test_out_of_range_allow_policy_passes_through(env):
    app = _app(_service(env, "serve.input_policy.out_of_range=allow"))
    r = call(app, "POST", "/predict", json={"rows": [dict(env["rows"][0], age=1000)]}, headers=AUTH)
    assert r.status_code == 200


@pytest.mark.parametrize(("policy", "plan_ok", "payment_ok"), [
    ("schema", False, True), ("reject", False, False), ("allow", True, True)])
def test_unknown_category_policies(env, policy, plan_ok, payment_ok):
    app = _app(_service(env, f"serve.input_policy.unknown_category={policy}"))
    plan = call(app, "POST", "/predict", json={"rows": [dict(env["rows"][0], plan="gold")]}, headers=AUTH)
    pay = call(app, "POST", "/predict", json={"rows": [dict(env["rows"][0], payment_method="crypto")]}, headers=AUTH)
    assert (plan.status_code == 200) is plan_ok, plan.text
    assert (pay.status_code == 200) is payment_ok, pay.text
    if not payment_ok:
        assert pay.json()["problems"][0]["field"] == "rows[0].payment_method"


# ---- auth on the app ---------------------------------------------------------------------------

@pytest.mark.parametrize(("method", "path"), [("POST", "/predict"), ("POST", "/feedback"), ("GET", "/model")])
def test_protected_paths_need_the_key(served, method, path):
    missing = call(served["app"], method, path, json={})
    wrong = call(served["app"], method, path, json={}, headers={"X-API-Key": "nope-nope-nope-nope"})
    assert missing.status_code == 401 and missing.json()["error"] == "unauthorized"
    assert wrong.status_code == 403 and wrong.json()["error"] == "forbidden"
    assert KEY not in missing.text + wrong.text


def test_bearer_header_works_and_health_and_docs_are_open(env, served):
    bearer = {"Authorization": f"Bearer {KEY}"}
    assert call(served["app"], "POST", "/predict", json={"rows": env["rows"][:1]}, headers=bearer).status_code == 200
    health = call(served["app"], "GET", "/healthz")
    assert health.status_code == 200 and health.json()["model_version"] == env["v1"]
    spec = call(served["app"], "GET", "/openapi.json").json()
    assert {"/predict", "/feedback", "/model", "/healthz"} <= set(spec["paths"])
    schema = json.dumps(spec)
    assert "tenure_months" in schema and "premium" in schema  # the real data schema, not a placeholder


def test_unknown_paths_and_methods_answer_in_the_same_shape(served):
    missing = call(served["app"], "GET", "/nope")
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    wrong = call(served["app"], "GET", "/predict", headers=AUTH)
    assert wrong.status_code == 405 and wrong.json()["error"] == "method_not_allowed"


def test_auth_disabled_serves_without_a_key(env):
    app = _app(_service(env, "serve.auth.enabled=false"), key=None)
    assert call(app, "POST", "/predict", json={"rows": env["rows"][:1]}).status_code == 200


FEEDBACK_KEY = "unit-test-feedback-key-" + "Zr4Wq8Ls1Nd6Kc3Vx0Hm"


def test_a_feedback_key_has_feedback_alone_and_the_predict_key_everything_else(env, served):
    service = served["service"]
    app = build_app(service.models, service, ApiKeyChecker(KEY, FEEDBACK_KEY), service.serve.limits.max_body_bytes,
                    service.metrics)
    fb = {"X-API-Key": FEEDBACK_KEY}
    r = call(app, "POST", "/predict", json={"rows": env["rows"][:2]}, headers=AUTH)
    assert r.status_code == 200, r.text
    labels = {"labels": [{"request_id": p["request_id"], "label": 1} for p in r.json()["predictions"]]}
    refused = call(app, "POST", "/feedback", json=labels, headers=AUTH)  # the predict key may not choose labels
    assert refused.status_code == 403 and refused.json()["error"] == "forbidden"
    assert "/feedback needs the feedback key" in refused.json()["message"]
    assert call(app, "POST", "/feedback", json=labels, headers=fb).status_code == 200
    for method, path, body in (("POST", "/predict", {"rows": env["rows"][:1]}), ("GET", "/model", None)):
        wrong = call(app, method, path, json=body, headers=fb)
        assert wrong.status_code == 403 and "feedback key" in wrong.json()["message"], (path, wrong.text)
        assert call(app, method, path, json=body, headers=AUTH).status_code == 200
    assert FEEDBACK_KEY not in refused.text and KEY not in refused.text
    # Without a feedback key (the `served` app) the one key opens all three, as before.
    assert call(served["app"], "GET", "/model", headers=AUTH).status_code == 200
    assert call(served["app"], "POST", "/feedback", json={"labels": []}, headers=AUTH).status_code == 422
    assert call(served["app"], "POST", "/feedback", json={"labels": []}, headers=fb).status_code == 403


def test_a_flood_of_unknown_keys_gets_429_and_the_known_key_still_works(env, served):
    service = served["service"]
    checker = ApiKeyChecker(KEY, verify_burst=1, verify_rate=0.0)  # one slow verification, then none
    app = build_app(service.models, service, checker, service.serve.limits.max_body_bytes, service.metrics)
    assert call(app, "GET", "/model", headers=AUTH).status_code == 200  # verified once, then cached
    for i in range(5):
        r = call(app, "GET", "/model", headers={"X-API-Key": f"an-unknown-but-plausible-key-{i:04d}-x7Qp"})
        assert r.status_code == 429 and r.headers["retry-after"] == "1" and r.json()["error"] == "too_many_requests"
    assert call(app, "GET", "/model", headers=AUTH).status_code == 200
    assert checker.verifications == 1


# ---- feedback ------------------------------------------------------------------------------------

def test_feedback_is_stored_as_partitioned_parquet(env, served):
    preds = call(served["app"], "POST", "/predict", json={"rows": env["rows"][:3]}, headers=AUTH).json()["predictions"]
    labels = [{"request_id": p["request_id"], "label": i % 2} for i, p in enumerate(preds)]
    r = call(served["app"], "POST", "/feedback", json={"labels": labels}, headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": 3, "model": "churn", "corrections": 0}
    stored = read_feedback(env["root"], "churn")
    mine = stored[stored["request_id"].isin([p["request_id"] for p in preds])]
    assert sorted(mine["label"]) == ["0", "0", "1"]
    assert set(mine["served_version"]) == {env["v1"]} and not mine["correction"].any()
    files = list((Path(env["root"]) / "feedback" / "churn").glob("date=*/hour=*/*.parquet"))
    assert files and not list((Path(env["root"]) / "feedback").rglob(".tmp-*"))


@pytest.fixture(scope="module")
def quick(env):
    """A service that writes labels every 50 ms (the provenance tests post many)."""
    service = _service(env, "serve.feedback.flush_s=0.05")
    return {"service": service, "app": _app(service)}


def _predicted_ids(app, env, n: int) -> list[str]:
    body = call(app, "POST", "/predict", json={"rows": env["rows"][:n]}, headers=AUTH).json()
    return [p["request_id"] for p in body["predictions"]]


def _stored_ids(env) -> set[str]:
    return set(read_feedback(env["root"], "churn")["request_id"])


def test_a_label_for_an_id_this_model_never_answered_is_refused_404_and_nothing_is_stored(env, quick):
    real = _predicted_ids(quick["app"], env, 2)
    forged = uuid.uuid4().hex
    r = call(quick["app"], "POST", "/feedback", headers=AUTH, json={"labels": [
        {"request_id": real[0], "label": 1}, {"request_id": forged, "label": 0}, {"request_id": real[1], "label": 1}]})
    assert r.status_code == 404, r.text
    body = r.json()
    assert body["error"] == "unknown_request_id" and forged in body["message"]
    assert [p["field"] for p in body["problems"]] == ["labels[1].request_id"]
    assert not _stored_ids(env) & {*real, forged}  # all or nothing: the real ids were not stored either
    # ... and were not used up: labelling them alone now works
    assert call(quick["app"], "POST", "/feedback", headers=AUTH, json={"labels": [
        {"request_id": i, "label": 1} for i in real]}).status_code == 200
    assert set(real) <= _stored_ids(env)


def test_a_second_label_for_an_id_is_refused_409_and_the_first_stands(env, quick):
    rid = _predicted_ids(quick["app"], env, 1)[0]
    first = call(quick["app"], "POST", "/feedback", headers=AUTH, json={"labels": [{"request_id": rid, "label": 1}]})
    assert first.status_code == 200, first.text
    again = call(quick["app"], "POST", "/feedback", headers=AUTH, json={"labels": [{"request_id": rid, "label": 0}]})
    assert again.status_code == 409 and again.json()["error"] == "repeated_label", again.text
    stored = read_feedback(env["root"], "churn")
    assert stored.loc[stored["request_id"] == rid, "label"].tolist() == ["1"]


def test_with_on_repeat_correct_a_second_label_is_stored_as_a_correction_and_read_last(env):
    service = _service(env, "serve.feedback.flush_s=0.05", "serve.feedback.on_repeat=correct")
    app = _app(service)
    rid = _predicted_ids(app, env, 1)[0]
    assert call(app, "POST", "/feedback", headers=AUTH, json={"labels": [{"request_id": rid, "label": 1}]}).json()[
        "corrections"] == 0
    r = call(app, "POST", "/feedback", headers=AUTH, json={"labels": [{"request_id": rid, "label": 0}]})
    assert r.status_code == 200 and r.json()["corrections"] == 1, r.text
    stored = read_feedback(env["root"], "churn")
    mine = stored[stored["request_id"] == rid]
    assert mine["label"].tolist() == ["1", "0"] and mine["correction"].tolist() == [False, True]


def test_provenance_off_takes_any_id_as_before(env):
    service = _service(env, "serve.feedback.flush_s=0.05", "serve.feedback.provenance=false")
    rid = uuid.uuid4().hex
    r = call(_app(service), "POST", "/feedback", headers=AUTH, json={"labels": [{"request_id": rid, "label": 1}]})
    assert r.status_code == 200 and rid in _stored_ids(env)


@pytest.mark.parametrize(("labels", "field", "reason"), [
    ([{"request_id": "0" * 32, "label": 7}], "labels[0].label", "unknown_category"),
    ([{"request_id": "xyz", "label": 1}], "labels[0].request_id", "invalid_request_id"),
    ([{"request_id": "0" * 32}], "labels[0].label", "missing_field"),
    ([{"request_id": "0" * 32, "label": 1, "extra": 1}], "labels[0].extra", "extra_field"),
    ([{"request_id": "0" * 32, "label": 1}] * 2, "labels", "duplicate_request_id"),
    ([], "labels", "empty"),
])
def test_bad_feedback_is_a_4xx_naming_the_field(served, labels, field, reason):
    r = call(served["app"], "POST", "/feedback", json={"labels": labels}, headers=AUTH)
    assert r.status_code == 422, r.text
    assert r.json()["error"] == reason and r.json()["problems"][0]["field"] == field


def test_regression_feedback_takes_finite_numbers(env, tmp_path):
    cfg = config.load([f"storage.root={env['root']}", "data=churn_ltv"])
    service = PredictionService(cfg.data, cfg.serve)
    feedback_model = service.models.feedback_request
    ok = feedback_model.model_validate({"labels": [{"request_id": "a" * 32, "label": 12.5}]})
    assert ok.labels[0]["label"] == 12.5
    with pytest.raises(Exception, match="finite"):
        feedback_model.model_validate({"labels": [{"request_id": "a" * 32, "label": float("inf")}]})


# ---- model swaps ---------------------------------------------------------------------------------

def _spec(env, ref, version=None):
    return ModelSpec(storage_root=env["root"], model="churn", ref=ref, version=version)


def test_swap_loads_the_new_version_and_reports_it(env):
    holder = ModelHolder(env["cfg"].data)
    first = holder.swap(_spec(env, "production"))
    assert first.changed and holder.require().version == env["v1"]
    second = holder.swap(_spec(env, env["v2"], env["v2"]))
    assert second.changed and second.error is None
    assert holder.require().version == env["v2"] and holder.info()["last_swap_error"] is None
    again = holder.swap(_spec(env, "pinned-again", env["v2"]))
    assert not again.changed and holder.require().ref == "pinned-again"


@pytest.mark.parametrize("target", ["broken", "missing", "no-such-alias"])
def test_failed_swap_keeps_the_old_model_and_records_the_error(env, target):
    holder = ModelHolder(env["cfg"].data)
    holder.swap(_spec(env, "production"))
    old = holder.require()
    version = {"broken": env["broken"], "missing": "v20990101-000000-000-abcdef", "no-such-alias": None}[target]
    outcome = holder.swap(_spec(env, "no-such-alias" if version is None else version, version))
    assert outcome.error is not None and not outcome.changed
    assert holder.require() is old  # the very same object keeps serving
    info = holder.info()
    assert info["version"] == env["v1"]
    assert info["last_swap_error"]["kept_version"] == env["v1"]
    assert info["last_swap_error"]["error"]
    # A later good swap clears the error.
    holder.swap(_spec(env, env["v2"], env["v2"]))
    assert holder.info()["last_swap_error"] is None


def test_first_load_failure_raises(env):
    holder = ModelHolder(env["cfg"].data)
    with pytest.raises(RegistryError):
        holder.swap(_spec(env, "v20990101-000000-000-abcdef", "v20990101-000000-000-abcdef"))
    assert holder.current is None and holder.info()["last_swap_error"] is not None


def test_version_for_another_schema_is_refused(env):
    other = config.load([f"storage.root={env['root']}", "data=churn_segment"])
    holder = ModelHolder(other.data)  # a multiclass API cannot serve the binary churn model
    with pytest.raises(Exception, match="binary"):
        holder.swap(_spec(env, "production"))


def test_user_config_round_trip_and_errors():
    spec = ModelSpec(storage_root="/r", model="m", ref="production", version=None)
    assert ModelSpec.from_user_config(spec.to_user_config()) == spec
    from foundry.errors import ConfigError

    for bad in ([], {"model": "m"}, {**spec.to_user_config(), "colour": 1}, {**spec.to_user_config(), "ref": ""}):
        with pytest.raises(ConfigError):
            ModelSpec.from_user_config(bad)


def test_predictions_during_a_swap_name_one_version(env):
    """A batch takes the model once, so a swap between batches changes whole responses only."""
    service = _service(env)
    first = service.run_batch([env["rows"][:2], env["rows"][2:3]])
    service.swap(_spec(env, env["v2"], env["v2"]))
    second = service.run_batch([env["rows"][:2]])
    assert {p["model_version"] for o in first for p in o["predictions"]} == {env["v1"]}
    assert {p["model_version"] for o in second for p in o["predictions"]} == {env["v2"]}
