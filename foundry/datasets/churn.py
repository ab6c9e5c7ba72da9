"""A synthetic telecom churn table with named drift scenarios, so every stage of the platform can be
exercised end to end (and its drift handling tested) without shipping or downloading a data set.

Every random quantity comes from its own stream, keyed by ``(seed, component)`` and never by the
scenario, so a scenario's rows are the baseline's rows except for exactly what the scenario changes:
same customers, same noise, same label draws. That makes each drift a controlled experiment.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

SCENARIOS = ("baseline", "covariate_shift", "new_category", "concept_shift", "label_shift", "benign_shift",
             "harmful_covariate")

PLANS = np.array(["basic", "standard", "premium"], dtype=object)
CONTRACTS = np.array(["monthly", "annual", "two_year"], dtype=object)
PAYMENTS = np.array(["card", "bank_transfer", "paypal", "check", "crypto"], dtype=object)
REGIONS = np.array(["north", "south", "east", "west", "central"], dtype=object)
SEGMENTS = np.array(["value", "growth", "loyal"], dtype=object)

# One stream per component. Append only: reordering or removing one reshuffles existing data sets.
_STREAMS = ("region", "age", "contract", "tenure", "plan", "products", "charges", "usage", "usage_null",
            "payment", "mood", "support", "satisfaction", "sat_null", "late", "churn", "segment", "ltv",
            "new_payment", "new_region")

# Intercepts chosen so the baseline churn rate is ~27% and label_shift's is ~50%.
_INTERCEPT = -1.25
_LABEL_SHIFT = 1.5


def _rngs(seed: int) -> dict[str, np.random.Generator]:
    return {name: np.random.default_rng([seed, i]) for i, name in enumerate(_STREAMS)}


def _pick(u: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Vectorised categorical draw: row ``i`` picks from its own probability row ``probs[i]``."""
    cum = np.cumsum(probs / probs.sum(axis=1, keepdims=True), axis=1)
    return np.minimum((u[:, None] > cum).sum(axis=1), probs.shape[1] - 1)


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _features(r: dict[str, np.random.Generator], n: int, scenario: str) -> dict[str, np.ndarray]:
    region = _pick(r["region"].random(n), np.tile([0.3, 0.25, 0.25, 0.2], (n, 1)))
    age = np.clip(np.round(r["age"].normal(46, 15, n)), 18, 90)
    older = (age - 46) / 15
    # harmful_covariate: a campaign moves customers onto monthly contracts, where churn is a coin toss.
    monthly = 2.0 if scenario == "harmful_covariate" else 0.0
    contract = _pick(r["contract"].random(n), _softmax(np.stack(
        [np.full(n, 0.6 + monthly), -0.1 + 0.3 * older, -0.6 + 0.5 * older], axis=1)))
    tenure_mean = np.array([14.0, 34.0, 58.0])[contract]
    tenure = np.clip(np.round(r["tenure"].gamma(1.6, tenure_mean / 1.6)), 0, 120)
    plan = _pick(r["plan"].random(n), _softmax(np.stack(
        [np.full(n, 0.3), 0.2 + 0.004 * tenure, -0.4 - 0.3 * older + 0.2 * (contract > 0)], axis=1)))
    products = np.clip(1 + r["products"].poisson(np.array([0.4, 1.1, 2.0])[plan]), 1, 8)
    charges = (np.array([28.0, 58.0, 98.0])[plan] + 9.0 * products) * r["charges"].lognormal(0, 0.18, n)
    usage = np.array([15.0, 45.0, 120.0])[plan] * np.exp(-0.35 * older) * r["usage"].lognormal(0, 0.7, n)
    payment = _pick(r["payment"].random(n), _softmax(np.stack(
        [np.full(n, 0.5), 0.1 + 0.3 * (contract > 0), np.full(n, -0.1) - 0.4 * older, -0.9 + 0.7 * older],
        axis=1)))
    # A hidden dissatisfaction drives both support calls and the satisfaction score, so the two are
    # correlated but neither is a perfect proxy for the other (which keeps the label learnable, not trivial).
    mood = r["mood"].normal(0, 1, n) + 0.25 * (plan == 0)
    support = np.clip(r["support"].poisson(np.exp(0.2 + 0.55 * mood)), 0, 30)
    satisfaction = np.clip(np.round(6.8 - 1.4 * mood + r["satisfaction"].normal(0, 1.2, n)), 1, 10)
    late = np.clip(r["late"].poisson(np.exp(-1.0 + 0.5 * (payment == 3) - 0.4 * (payment == 1)
                                             - 0.2 * older + 0.3 * (contract == 0))), 0, 24)
    new_payment = r["new_payment"].random(n) < 0.25
    new_region = r["new_region"].random(n) < 0.15
    if scenario == "covariate_shift":
        charges = charges * 1.35
        usage = usage * 1.8
        age = np.clip(age - 9, 18, 90)
    if scenario == "benign_shift":
        # Heavier data users on more products: inputs the model sees move, the churn risk they carry
        # does not (usage is not in the concept; products only through the charges the model reads).
        usage = usage * 2.0
        products = np.clip(products + 1, 1, 8)
        charges = charges + 9.0
    if scenario == "new_category":
        payment = np.where(new_payment, 4, payment)
        region = np.where(new_region, 4, region)
    return {
        "age": age, "tenure_months": tenure, "monthly_charges": np.round(np.clip(charges, 10, 300), 2),
        "data_usage_gb": np.round(np.clip(usage, 0, 2000), 2), "support_calls": support,
        "num_products": products, "late_payments": late, "satisfaction": satisfaction,
        "plan": plan, "contract": contract, "payment_method": payment, "region": region,
    }


def _churn_logit(f: dict[str, np.ndarray], scenario: str) -> np.ndarray:
    """The concept. Nulls are drawn independently of the label, so the concept uses the true values."""
    contract, charges, sat = f["contract"], f["monthly_charges"], f["satisfaction"]
    tenure_effect = -0.9 * np.log1p(f["tenure_months"] / 6)
    price = (charges - 75) / 40
    payment_risk = np.array([0.0, -0.3, 0.15, 0.35, 0.8])[f["payment_method"]]
    region_risk = np.array([0.0, 0.15, -0.1, 0.05, 0.3])[f["region"]]
    if scenario == "concept_shift":
        # Loyalty programme ended and a price war started: long contracts now churn (early-exit fees
        # were waived), price dominates, and support quality no longer matters.
        return (-0.9 + np.array([-1.2, 0.5, 1.6])[contract] + 1.6 * price - 0.25 * (sat - 6.5)
                + 0.3 * tenure_effect + 0.2 * f["late_payments"] + payment_risk + region_risk)
    calls = np.minimum(f["support_calls"], 8)
    logit = (_INTERCEPT + np.array([1.2, -0.2, -1.1])[contract] + tenure_effect + 0.3 * calls
             - 0.35 * (sat - 6.5) + 0.35 * f["late_payments"] + 0.35 * price
             + 0.5 * price * (contract == 0) + 0.35 * (calls >= 4) * (sat <= 4)
             + payment_risk + region_risk)
    return logit + (_LABEL_SHIFT if scenario == "label_shift" else 0.0)


def _segment(r: dict[str, np.random.Generator], f: dict[str, np.ndarray], scenario: str) -> np.ndarray:
    young = (46 - f["age"]) / 15
    usage = np.log1p(f["data_usage_gb"]) - 3.5
    tenure = f["tenure_months"] / 30
    value = 0.8 * (f["plan"] == 0) - 0.8 * (f["monthly_charges"] - 75) / 40
    growth = 0.6 * young + 0.8 * usage + 0.4 * (f["num_products"] - 2)
    loyal = 1.2 * tenure + 0.6 * (f["contract"] - 1) - 1.0
    scores = np.stack([value, growth, loyal], axis=1)
    if scenario == "concept_shift":
        scores = scores[:, [1, 2, 0]]  # the business redefined its segments
    noise = r["segment"].gumbel(0, 0.7, scores.shape)
    return SEGMENTS[np.argmax(scores + noise, axis=1)]


def generate(scenario: str, rows: int, seed: int) -> pd.DataFrame:
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown churn scenario {scenario!r} (known: {', '.join(SCENARIOS)})")
    r = _rngs(seed)
    f = _features(r, rows, scenario)
    p_churn = 1.0 / (1.0 + np.exp(-_churn_logit(f, scenario)))
    churned = (r["churn"].random(rows) < p_churn).astype(np.int64)
    # Lifetime value: spend times expected remaining life (a geometric lifetime from the monthly
    # hazard implied by the 12-month churn probability), with multiplicative noise.
    hazard = np.clip(1 - (1 - p_churn) ** (1 / 12), 1e-3, 1)
    ltv = f["monthly_charges"] * np.minimum(1 / hazard, 120) * r["ltv"].lognormal(0, 0.25, rows)
    segment = _segment(r, f, scenario)

    usage = np.where(r["usage_null"].random(rows) < 0.02, np.nan, f["data_usage_gb"])
    sat = np.where(r["sat_null"].random(rows) < 0.03, np.nan, f["satisfaction"])
    ids = pd.Series(np.arange(1, rows + 1)).astype(str).str.zfill(7)
    return pd.DataFrame({
        # Ids carry scenario and seed so a drifted batch never repeats a baseline id (the split hash key).
        "customer_id": f"C{SCENARIOS.index(scenario)}{seed:04d}-" + ids,
        "age": f["age"].astype(np.int64),
        "tenure_months": f["tenure_months"].astype(np.int64),
        "monthly_charges": f["monthly_charges"],
        "data_usage_gb": usage,
        "support_calls": f["support_calls"].astype(np.int64),
        "num_products": f["num_products"].astype(np.int64),
        "late_payments": f["late_payments"].astype(np.int64),
        "satisfaction": sat,
        "plan": PLANS[f["plan"]],
        "contract": CONTRACTS[f["contract"]],
        "payment_method": PAYMENTS[f["payment_method"]],
        "region": REGIONS[f["region"]],
        "churned": churned,
        "segment": segment,
        "lifetime_value": np.round(ltv, 2),
    })
