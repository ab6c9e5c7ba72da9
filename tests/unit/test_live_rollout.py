"""Roll-outs without Ray: the split, the anytime-valid paired tests, the judge, the replica's routing and
the roll-out manager's decisions (Serve replaced by a recorder, a real registry on disk).

The statistical tests use fixed seeds and bounds that a broken mechanism misses: a test that looked
after every label with a fixed-sample rule, or ignored the pairing, would promote equal challengers and
roll back better ones far more often than these bounds allow.
"""

from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from foundry import config
from foundry.config import Task
from foundry.datasets import generate
from foundry.models.predictor import Predictor
from foundry.rollout import routing
from foundry.rollout.judge import Judge, row_losses
from foundry.rollout.manager import Rollouts
from foundry.rollout.paired import PairedTests
from foundry.serving.holder import LoadedModel, Serving
from foundry.serving.inference import answer_batch, second_opinion
from foundry.serving.service import Background
from tests.versions import build_version_dir

LIVE = config.load([]).promotion.live
FEATURES = [f.name for f in config.load([]).data.features]


# ---- routing --------------------------------------------------------------------------------------------
def test_the_split_is_a_fixed_hash_monotone_in_the_fraction_and_fresh_per_challenger():
    ids = [routing.normalize_request_id(None) for _ in range(20000)]
    at5 = {i for i in ids if routing.to_challenger(i, "v-a", 0.05)}
    at25 = {i for i in ids if routing.to_challenger(i, "v-a", 0.25)}
    assert at5 <= at25  # stepping up never moves a request back to the champion
    assert abs(len(at5) / len(ids) - 0.05) < 0.01 and abs(len(at25) / len(ids) - 0.25) < 0.015
    assert at5 == {i for i in ids if routing.to_challenger(i, "v-a", 0.05)}  # a retry meets the same version
    other = {i for i in ids if routing.to_challenger(i, "v-b", 0.25)}
    assert abs(len(other & at25) / len(ids) - 0.25 ** 2) < 0.015  # another challenger: an independent split
    assert not any(routing.to_challenger(i, "v-a", 0.0) for i in ids[:100])
    assert all(routing.to_challenger(i, "v-a", 1.0) for i in ids[:100])


def test_row_ids_are_the_request_id_then_derived_and_a_uuid_is_accepted():
    rid = routing.normalize_request_id("0F8FAD5B-D9CB-469F-A165-70867728950E")
    assert rid == "0f8fad5bd9cb469fa16570867728950e"
    rows = routing.row_ids(rid, 3)
    assert rows[0] == rid and len(set(rows)) == 3 and rows == routing.row_ids(rid, 3)
    assert all(len(r) == 32 and int(r, 16) >= 0 for r in rows)


# ---- the paired tests -----------------------------------------------------------------------------------
def _stream(seed: int, n: int, champion: float, challenger: float, rho: float = 0.6):
    """Paired per-row losses in [0, 1] with the given means (correlated, like two models on one row)."""
    rng = np.random.default_rng(seed)
    common = rng.beta(2, 8, n)
    lc = np.clip(rho * common + (1 - rho) * rng.beta(2, 8, n) + (champion - 0.2), 0, 1)
    lk = np.clip(rho * common + (1 - rho) * rng.beta(2, 8, n) + (challenger - 0.2), 0, 1)
    return lc, lk


def _first(tests: PairedTests, lc, lk, which: str, step: int = 25) -> int | None:
    for start in range(0, len(lc), step):
        tests.update(lc[start:start + step], lk[start:start + step])
        if tests.shown(which):
            return tests.n
    return None


def test_a_bad_challenger_is_shown_worse_within_500_rows_and_a_good_one_better():
    worse = [_first(PairedTests(LIVE), *_stream(s, 3000, 0.20, 0.26), "worse") for s in range(20)]
    assert all(w is not None and w <= 500 for w in worse), worse
    better = [_first(PairedTests(LIVE), *_stream(s, 3000, 0.26, 0.20), "better") for s in range(20)]
    assert all(b is not None and b <= 1000 for b in better), better


def test_looking_after_every_batch_of_labels_keeps_the_error_rates():
    """Equal versions, looked at every 25 labels for 4,000 rows: a naive z-test would 'decide' in roughly
    a third of the seeds; the e-processes stay within alpha (0.05), here <= 4 of 60 seeds each."""
    promoted = sum(_first(PairedTests(LIVE), *_stream(s, 4000, 0.2, 0.2), "better") is not None for s in range(60))
    rolled_back = sum(_first(PairedTests(LIVE), *_stream(s, 4000, 0.2, 0.2), "worse") is not None for s in range(60))
    assert promoted <= 4 and rolled_back <= 4, (promoted, rolled_back)
    truly_better = sum(_first(PairedTests(LIVE), *_stream(s, 4000, 0.21, 0.2), "worse") is not None for s in range(60))
    assert truly_better <= 1


def test_the_paired_state_survives_a_round_trip():
    t = PairedTests(LIVE)
    t.update(*_stream(1, 300, 0.2, 0.25))
    back = PairedTests.from_dict(LIVE, t.to_dict())
    assert back.summary() == t.summary()


# ---- the judge --------------------------------------------------------------------------------------------
def _answers(ids, version, scores, served=True, seconds=0.001, failed=False):
    n = len(ids)
    return {"request_id": np.asarray(ids, dtype=object), "model_version": np.full(n, version, dtype=object),
            "scores": np.asarray(scores, dtype=np.float32).reshape(n, -1), "served": np.full(n, served),
            "seconds": np.full(n, seconds), "failed": np.full(n, failed), "batch_start": np.ones(n, dtype=bool)}


def test_half_brier_loss_by_hand():
    losses = row_losses(Task.binary, np.asarray([[0.8, 0.2], [0.8, 0.2]]), ["0", "1"], ["0", "1"], 1.0)
    np.testing.assert_allclose(losses, [0.04, 0.64])
    reg = row_losses(Task.regression, np.asarray([[1.0], [10.0]]), [2.0, 0.0], None, 2.0)
    np.testing.assert_allclose(reg, [0.25, 1.0])


def test_the_judge_pairs_a_row_once_whatever_arrives_first():
    j = Judge(LIVE, Task.binary, ["0", "1"], 1.0, "champ", "chall")
    j.add_answers(_answers(["a", "b"], "champ", [[0.8, 0.2], [0.5, 0.5]]))
    assert j.add_labels(["a", "b", "c"], ["0", "1", "0"]) == 0  # the challenger's answers are not there yet
    j.add_answers(_answers(["a", "b", "c"], "chall", [[0.9, 0.1], [0.1, 0.9], [1.0, 0.0]], served=False))
    assert j.tests.n == 2  # a and b; c still waits for the champion's answer
    j.add_answers(_answers(["c"], "champ", [[0.5, 0.5]]))
    assert j.tests.n == 3
    assert j.add_labels(["a"], ["1"]) == 0  # a second label for a scored row scores nothing
    np.testing.assert_allclose(j.tests.loss_champion, 0.04 + 0.25 + 0.25, rtol=1e-5)


def test_a_failing_or_slow_challenger_is_unhealthy_whatever_its_accuracy():
    cfg = config.load(["promotion.live.min_health_rows=50"]).promotion.live
    j = Judge(cfg, Task.binary, ["0", "1"], 1.0, "champ", "chall")
    ids = [f"r{i}" for i in range(100)]
    j.add_answers(_answers(ids, "champ", [[0.5, 0.5]] * 100))
    j.add_answers(_answers(ids[:97], "chall", [[0.5, 0.5]] * 97))
    j.add_answers(_answers(ids[97:], "chall", [[np.nan, np.nan]] * 3, failed=True))
    assert "failed" in j.unhealthy()
    slow = Judge(cfg, Task.binary, ["0", "1"], 1.0, "champ", "chall")
    for i in range(60):
        slow.add_answers(_answers([f"c{i}"], "champ", [[0.5, 0.5]], seconds=0.002))
        slow.add_answers(_answers([f"c{i}"], "chall", [[0.5, 0.5]], seconds=0.02))
    assert "p99" in slow.unhealthy()


# ---- the replica's routing ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def two_versions(tmp_path_factory):
    cfg = config.load([])
    root = tmp_path_factory.mktemp("rollout-versions")
    a = Predictor.from_dir(build_version_dir(cfg, root / "a", rows=1500, steps=10))
    b = Predictor.from_dir(build_version_dir(cfg, root / "b", rows=1500, steps=30))

    def loaded(version, predictor):
        return LoadedModel(model="m", version=version, ref=version, storage_root="/x", predictor=predictor,
                           created_at="", metadata={})

    rows = generate("churn", "baseline", 64, seed=3)[FEATURES].to_dict(orient="records")
    return loaded("v-champ", a), loaded("v-chall", b), rows


def test_a_canary_answers_each_request_with_the_version_its_id_hashes_to(two_versions):
    champ, chall, rows = two_versions
    serving = Serving(champ, chall, "canary", 0.3)
    requests = [rows[i:i + 2] for i in range(0, 64, 2)]
    ids = [routing.normalize_request_id(None) for _ in requests]
    answers, later = [], []
    out = answer_batch(serving, requests, FEATURES, answers=answers.append,
                       background=lambda *job: later.append(job) or True, request_ids=ids)
    for rid, body in zip(ids, out, strict=True):
        expected = "v-chall" if routing.to_challenger(rid, "v-chall", 0.3) else "v-champ"
        assert body["model_version"] == expected and body["request_id"] == rid
        assert {p["model_version"] for p in body["predictions"]} == {expected}  # a request never mixes versions
    assert {a["served"][0] for a in answers} <= {True} and len(later) >= 1
    for model, frame, rows_ids in later:  # the other version's second opinion on the same rows
        second_opinion(model, frame, rows_ids, answers.append)
    versions = {}
    for chunk in answers:
        for rid, v in zip(chunk["request_id"], chunk["model_version"], strict=True):
            versions.setdefault(rid, set()).add(v)
    assert all(v == {"v-champ", "v-chall"} for v in versions.values()) and len(versions) == 64
    again = answer_batch(serving, requests, FEATURES, request_ids=ids)  # the retry meets the same versions
    assert [b["model_version"] for b in again] == [b["model_version"] for b in out]


def test_in_shadow_users_only_see_the_champion_and_a_failing_challenger_fails_no_request(two_versions):
    champ, chall, rows = two_versions
    out = answer_batch(Serving(champ, chall, "shadow", 0.0), [rows[:5], rows[5:9]], FEATURES,
                       background=lambda *job: True)
    assert all(b["model_version"] == "v-champ" for b in out)

    class Broken:
        preprocessor = chall.predictor.preprocessor

        def predict(self, frame):
            raise RuntimeError("weights gone")

    broken = LoadedModel(model="m", version="v-broken", ref="v-broken", storage_root="/x", predictor=Broken(),
                         created_at="", metadata={})
    answers = []
    out = answer_batch(Serving(champ, broken, "canary", 1.0), [rows[:3]], FEATURES, answers=answers.append,
                       background=lambda *job: True)
    assert out[0]["model_version"] == "v-champ"
    assert any(chunk["failed"].all() and chunk["model_version"][0] == "v-broken" for chunk in answers)


# ---- the manager ------------------------------------------------------------------------------------------
class _Serve:
    def __init__(self):
        self.calls = []

    def __call__(self, version, challenger, mode, fraction):
        self.calls.append((version, challenger, mode, fraction))


@pytest.fixture()
def managed(tmp_path: Path, two_versions):
    def make(rollout: str, hold=lambda: False, **live):
        overrides = [f"storage.root={tmp_path}", f"promotion.rollout={rollout}", "promotion.live.poll_s=0.01",
                     "promotion.live.min_rows_per_step=50", *(f"promotion.live.{k}={v}" for k, v in live.items())]
        cfg = config.load(overrides)
        reg = cfg.storage.layout.open_registry()
        src = tmp_path / "src"
        if not src.exists():
            build_version_dir(cfg, src, rows=1200, steps=5)
        champ = reg.register(cfg.model_name, src, {}).version
        chall = reg.register(cfg.model_name, src, {}).version
        reg.set_alias(cfg.model_name, "production", champ)
        events, serve, state = [], _Serve(), {"champion": champ}
        reference = types.SimpleNamespace(predictor=two_versions[0].predictor, sample=pd.DataFrame())
        m = Rollouts(cfg, locked=lambda: _nullcontext(), say=lambda kind, msg, **f: events.append((kind, msg, f)),
                     champion=lambda: state["champion"], reference=lambda: reference,
                     rebase_to=lambda v: state.update(champion=v), fresh_evidence=lambda: events.append(("fresh", "", {})),
                     apply=serve, check=lambda cfg, v: None, registry=reg, hold=hold)
        return types.SimpleNamespace(m=m, reg=reg, cfg=cfg, champ=champ, chall=chall, events=events, serve=serve,
                                     state=state)
    return make


class _nullcontext:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _probs(rng, y, err):
    p1 = np.clip(np.where(y == 1, 1 - err, err) + rng.normal(0, 0.02, len(y)), 0, 1)
    return np.stack([1 - p1, p1], axis=1)


def _feed(m: Rollouts, champ: str, chall: str, n: int, lc: float, lk: float, seed: int = 0) -> None:
    """n labelled rows on which the champion predicts the true class with probability 1 - lc, etc."""
    rng = np.random.default_rng(seed)
    for start in range(0, n, 25):
        ids = [f"{seed}-{start + i}" for i in range(25)]
        y = rng.integers(0, 2, 25)
        m.add_answers(_answers(ids, champ, _probs(rng, y, lc)))
        m.add_answers(_answers(ids, chall, _probs(rng, y, lk), served=False))
        m.add_labels(ids, [str(v) for v in y])
        m.round(float(start))


def test_a_good_canary_steps_up_is_promoted_by_compare_and_set_and_then_guarded(managed):
    t = managed("canary")
    t.reg.set_alias(t.cfg.model_name, "candidate", t.chall)
    t.m.round(0.0)
    assert t.serve.calls[-1] == (t.champ, t.chall, "canary", 0.05)
    _feed(t.m, t.champ, t.chall, 1500, lc=0.4, lk=0.2)
    kinds = [e[0] for e in t.events]
    assert kinds[:5] == ["rollout_started", "rollout_step", "rollout_promoted", "rolled_out", "guard_started"], kinds
    assert t.reg.alias(t.cfg.model_name, "production") == t.chall and t.state["champion"] == t.chall
    assert (t.chall, t.champ, "shadow", 0.0) in t.serve.calls  # the old champion shadows the new one
    assert t.m.active is None or t.m.active["kind"] == "guard"


def test_a_bad_canary_is_rolled_back_at_its_first_step_and_never_retried(managed):
    t = managed("canary")
    t.reg.set_alias(t.cfg.model_name, "candidate", t.chall)
    t.m.round(0.0)
    _feed(t.m, t.champ, t.chall, 1500, lc=0.2, lk=0.4)
    kinds = [e[0] for e in t.events]
    assert "rolled_back" in kinds and "rollout_step" not in kinds, kinds
    assert max(c[3] for c in t.serve.calls) == 0.05 and t.serve.calls[-1] == (t.champ, None, None, 0.0)
    assert t.reg.alias(t.cfg.model_name, "production") == t.champ
    t.m.round(1e6)
    assert t.m.active is None  # the decided candidate is not tried again


def test_a_direct_roll_out_of_a_bad_version_is_rolled_back_by_the_guard(managed):
    t = managed("direct")
    t.reg.set_alias(t.cfg.model_name, "candidate", t.chall)
    t.m.round(0.0)
    assert t.reg.alias(t.cfg.model_name, "production") == t.chall and t.m.active["kind"] == "guard"
    _feed(t.m, t.chall, t.champ, 1500, lc=0.4, lk=0.2)  # the new version answers (and is worse)
    kinds = [e[0] for e in t.events]
    assert "rolled_back" in kinds and "fresh" in kinds, kinds
    assert t.reg.alias(t.cfg.model_name, "production") == t.champ and t.state["champion"] == t.champ
    assert t.serve.calls[-1] == (t.champ, None, None, 0.0)


def test_an_undecided_shadow_expires_and_the_champion_stays(managed):
    t = managed("shadow", max_labelled_rows=300)
    t.reg.set_alias(t.cfg.model_name, "candidate", t.chall)
    t.m.round(0.0)
    assert t.serve.calls[-1] == (t.champ, t.chall, "shadow", 0.0)
    _feed(t.m, t.champ, t.chall, 400, lc=0.3, lk=0.3)
    assert "rollout_expired" in [e[0] for e in t.events]
    assert t.reg.alias(t.cfg.model_name, "production") == t.champ


def test_a_roll_out_whose_serve_was_changed_by_hand_is_abandoned_not_fought(managed):
    """A rollback by hand during a guard: rows answered by a version the guard did not put there end it,
    and Serve is not touched again (the monitor then follows the served version)."""
    import time

    t = managed("direct")
    t.reg.set_alias(t.cfg.model_name, "candidate", t.chall)
    t.m.round(0.0)
    assert t.m.active["kind"] == "guard"
    calls = len(t.serve.calls)
    t.m.observe_served(np.full(10, t.chall, dtype=object), np.full(10, time.time() + 5))  # the new version: fine
    t.m.observe_served(np.full(30, t.champ, dtype=object), np.full(30, time.time() - 60))  # answered before: fine
    t.m.round(1.0)
    assert t.m.active is not None
    t.m.observe_served(np.full(30, t.champ, dtype=object), np.full(30, time.time() + 5))
    t.m.round(2.0)
    assert t.m.active is None and t.events[-1][0] == "rollout_abandoned"
    assert len(t.serve.calls) == calls


def test_second_opinions_are_computed_in_bulk_off_the_request_path(two_versions):
    """Fifty 1-row requests' second opinions: one preprocessor pass and forward, not fifty (per request,
    a second opinion costs as much CPU as the answer and showed as +19% p99 in rollout_bench)."""
    import threading

    champ, chall, rows = two_versions
    calls, done = [], threading.Event()

    class Counting:
        preprocessor = chall.predictor.preprocessor

        def predict(self, frame):
            calls.append(len(frame))
            return chall.predictor.predict(frame)

    counted = LoadedModel(model="m", version="v-chall", ref="v-chall", storage_root="/x", predictor=Counting(),
                          created_at="", metadata={})
    got = []
    bg = Background(lambda chunk: (got.append(chunk), done.set()), linger_s=0.2)
    for i in range(50):
        assert bg(counted, pd.DataFrame([rows[i]]), [f"id{i}"])
    assert done.wait(10)
    assert calls == [50] and list(got[0]["request_id"]) == [f"id{i}" for i in range(50)]
    full = Background(lambda chunk: None, max_rows=10, linger_s=5)
    assert full(counted, pd.DataFrame(rows[:8]), [f"a{i}" for i in range(8)])
    assert not full(counted, pd.DataFrame(rows[:8]), [f"b{i}" for i in range(8)]) and full.skipped == 8


def test_the_candidate_alias_waits_while_a_retrain_job_is_in_flight(managed):
    """The episode that ran the job starts its roll-out when it reads the outcome; the alias poll must not
    race it (the demo's log showed the canary starting before the job's own 'retrain_finished')."""
    running = {"job": True}
    t = managed("canary", hold=lambda: running["job"])
    t.reg.set_alias(t.cfg.model_name, "candidate", t.chall)
    t.m.round(0.0)
    assert t.m.active is None and not t.serve.calls
    running["job"] = False
    t.m.round(1.0)
    assert t.m.active is not None and t.serve.calls[-1] == (t.champ, t.chall, "canary", 0.05)


# ---- the decision rule ------------------------------------------------------------------------------------
def _judged(lc: float, lk: float, n: int) -> Judge:
    j = Judge(LIVE, Task.binary, ["0", "1"], 1.0, "champ", "chall")
    j.tests.update(*_stream(3, n, lc, lk))
    return j


def _active(**kw) -> dict:
    return {"kind": "rollout", "mode": "canary", "champion": "champ", "challenger": "chall",
            "steps": [0.05, 0.25, 1.0], "step": 0, "step_rows": 0, "started_at": 0.0, **kw}


def test_the_decision_rule_step_by_step():
    from foundry.rollout.decision import decide

    good = _judged(0.30, 0.15, 400)
    assert decide(_active(), good, LIVE, 1.0)[0] == "step"  # shown no worse at the first step
    assert decide(_active(step_rows=350), good, LIVE, 1.0) is None  # 50 rows at this step: not yet
    assert decide(_active(step=1, step_rows=250), good, LIVE, 1.0)[0] == "promote"  # the last step needs better
    assert decide(_active(mode="shadow", steps=[0.0]), good, LIVE, 1.0)[0] == "promote"
    bad = _judged(0.15, 0.30, 400)
    assert decide(_active(), bad, LIVE, 1.0)[0] == "rollback"
    assert decide(_active(kind="guard", mode="shadow", steps=[0.0]), bad, LIVE, 1.0)[0] == "rollback"
    assert decide(_active(kind="guard", mode="shadow", steps=[0.0]), good, LIVE, 1.0)[0] == "guard_passed"
    tie = _judged(0.2, 0.2, 300)
    assert decide(_active(), tie, LIVE, 1.0) is None
    assert decide(_active(), tie, LIVE, LIVE.max_seconds + 1)[0] == "expired"


# ---- data this project did not design -------------------------------------------------------------------
def test_a_canary_on_a_users_own_multiclass_data_pairs_every_labelled_row(tmp_path):
    """tests/own_data.py's parcels (three classes, an integer id key, an integer-coded categorical, a nullable
    numeric): two versions with other weights, a canary split, both answers per row, labels scored on the
    three-class probabilities, and a challenger that is worse shown worse."""
    import torch

    from foundry.config import sources as config_sources
    from foundry.config.sources import ConfigSources
    from foundry.data import preprocessor as pp
    from foundry.models import build_model, model_spec
    from foundry.models.predictor import write_model_files
    from tests.own_data import DATA_YAML, LABEL, parcels

    (tmp_path / "conf" / "data").mkdir(parents=True)
    (tmp_path / "conf" / "data" / "parcels.yaml").write_text(DATA_YAML.format(path=tmp_path / "parcels.csv"))
    cfg = config_sources.load(ConfigSources(overrides=("data=parcels",), config_dir=str(tmp_path / "conf")))
    features = [f.name for f in cfg.data.features]
    train = parcels(3000, seed=0)
    pre = pp.fit([pp.partial_stats(train, cfg.data)], cfg.data)
    enc = pre.transform_with_label(train)
    x_num, x_cat, y = (torch.from_numpy(enc[k]) for k in ("x_num", "x_cat", "y"))

    def version(name: str, steps: int) -> LoadedModel:
        torch.manual_seed(0)
        model = build_model(model_spec(cfg.model, pre))
        opt = torch.optim.Adam(model.parameters(), lr=0.02)
        for _ in range(steps):  # steps=0: an untrained model, a worse challenger
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x_num, x_cat), y.long()).backward()
            opt.step()
        write_model_files(tmp_path / name, model.state_dict(), model_spec(cfg.model, pre), pre, train.head(200))
        return LoadedModel(model="parcels", version=name, ref=name, storage_root="/x",
                           predictor=Predictor.from_dir(tmp_path / name), created_at="", metadata={})

    champ, chall = version("v-trained", 60), version("v-untrained", 0)
    live = parcels(1500, seed=1, first_id=9_000_000)
    rows = json_rows(live[features])
    requests = [rows[i:i + 5] for i in range(0, len(rows), 5)]
    answers, later = [], []
    out = answer_batch(Serving(champ, chall, "canary", 0.25), requests, features, answers=answers.append,
                       background=lambda *job: later.append(job) or True)
    for model, frame, ids in later:
        second_opinion(model, frame, ids, answers.append)
    assert {b["model_version"] for b in out} == {"v-trained", "v-untrained"}
    judge = Judge(LIVE, cfg.data.task, list(pre.classes), 1.0, "v-trained", "v-untrained")
    for chunk in answers:
        assert chunk["scores"].shape[1] == 3
        judge.add_answers(chunk)
    ids = [p["request_id"] for b in out for p in b["predictions"]]
    assert judge.add_labels(ids, live[LABEL].tolist()) == len(live)
    assert judge.tests.shown("worse") and not judge.tests.shown("better")


def json_rows(frame: pd.DataFrame) -> list[dict]:
    """Rows as the API receives them (JSON: NaN becomes null, numpy types plain)."""
    import json

    return json.loads(frame.to_json(orient="records"))
