"""Split, preprocessor, model + predictor round trip, and task helpers: the pieces shared by training,
batch evaluation and serving, tested without Ray."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import save_file

from foundry import config
from foundry.config import FeatureType, Task
from foundry.data import preprocessor as prep
from foundry.data import split
from foundry.datasets import generate
from foundry.models import TabularMLP, build_model, model_spec
from foundry.models.mlp import embedding_dim
from foundry.models.predictor import PREPROCESSOR_FILE, SPEC_FILE, WEIGHTS_FILE, Predictor
from foundry.models.tasks import HIGHER_IS_BETTER, PRIMARY_METRIC, evaluate, probabilities

ROWS = 20_000


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("root")


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return generate("churn", "baseline", ROWS, 0)


@pytest.fixture(scope="module")
def train(frame, cfg) -> pd.DataFrame:
    return frame[split.assign(frame, cfg.data) == "train"].reset_index(drop=True)


def _chunks(df: pd.DataFrame, n: int) -> list[pd.DataFrame]:
    bounds = np.linspace(0, len(df), n + 1).astype(int)
    return [df.iloc[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def _fit(df: pd.DataFrame, data, chunks: int = 1) -> prep.Preprocessor:
    return prep.fit([prep.partial_stats(c, data) for c in _chunks(df, chunks)], data)


def _numeric(data) -> list[str]:
    return [f.name for f in data.features if f.type is FeatureType.numeric]


def _categorical(data) -> list[str]:
    return [f.name for f in data.features if f.type is FeatureType.categorical]


# ======================================================================= split

@pytest.fixture(scope="module", params=["customer_id", "null"], ids=["key", "whole-row"])
def split_data(request, root):
    return config.load([f"storage.root={root}", f"data.split.key={request.param}"]).data


def test_split_key_setting(split_data):
    cols = split.key_columns(split_data)
    assert cols == (["customer_id"] if split_data.split.key else
                    [f.name for f in split_data.features] + [split_data.label])


def test_split_independent_of_row_order_and_chunking(frame, split_data):
    whole = pd.Series(split.assign(frame, split_data), index=frame["customer_id"])
    shuffled = frame.sample(frac=1.0, random_state=7)
    reordered = pd.Series(split.assign(shuffled, split_data), index=shuffled["customer_id"])
    assert (reordered.loc[whole.index] == whole).all()
    chunked = np.concatenate([split.assign(c, split_data) for c in _chunks(shuffled, 7)])
    assert (pd.Series(chunked, index=shuffled["customer_id"]).loc[whole.index] == whole).all()
    # Column order in the source does not matter either.
    assert (split.assign(frame[frame.columns[::-1]], split_data) == whole.to_numpy()).all()
    # Nor does the index.
    assert (split.assign(frame.set_index(np.arange(len(frame)) * 3 + 11), split_data) == whole.to_numpy()).all()


def test_split_fractions_match_config(frame, split_data):
    got = pd.Series(split.assign(frame, split_data)).value_counts(normalize=True)
    assert set(got.index) == set(split.SPLITS)
    for name in split.SPLITS:
        assert got[name] == pytest.approx(getattr(split_data.split, name), abs=0.02)


def test_split_fractions_follow_overrides(frame, root):
    data = config.load([f"storage.root={root}", "data.split.train=0.5", "data.split.val=0.3",
                        "data.split.test=0.2"]).data
    got = pd.Series(split.assign(frame, data)).value_counts(normalize=True)
    assert got["train"] == pytest.approx(0.5, abs=0.02)
    assert got["val"] == pytest.approx(0.3, abs=0.02)
    assert got["test"] == pytest.approx(0.2, abs=0.02)


def test_split_seed_changes_assignment(frame, split_data, root):
    key = split_data.split.key or "null"
    other = config.load([f"storage.root={root}", f"data.split.key={key}", "data.split.seed=1"]).data
    a, b = split.assign(frame, split_data), split.assign(frame, other)
    # Independent draws with 0.8/0.1/0.1 disagree on 1 - (.64 + .01 + .01) = 34% of rows.
    assert (a != b).mean() == pytest.approx(0.34, abs=0.03)
    assert pd.Series(b).value_counts(normalize=True)["train"] == pytest.approx(0.8, abs=0.02)


def test_keyed_split_depends_on_the_key_only(frame, cfg, root):
    changed = generate("churn", "covariate_shift", ROWS, 0)
    changed["customer_id"] = frame["customer_id"]
    assert cfg.data.split.key == "customer_id"
    assert (split.assign(changed, cfg.data) == split.assign(frame, cfg.data)).all()
    # Without a key the whole row is hashed: changed feature values move rows between splits.
    whole_row = config.load([f"storage.root={root}", "data.split.key=null"]).data
    assert (split.assign(changed, whole_row) != split.assign(frame, whole_row)).mean() > 0.1


def test_reference_draw_is_deterministic_uniform_and_independent_of_split(frame, split_data):
    draw = split.reference_draw(frame, split_data)
    assert draw.shape == (len(frame),)
    assert ((draw >= 0) & (draw < 1)).all()
    assert draw.mean() == pytest.approx(0.5, abs=0.02)
    shuffled = frame.sample(frac=1.0, random_state=3)
    again = pd.Series(split.reference_draw(shuffled, split_data), index=shuffled["customer_id"])
    assert np.array_equal(again.loc[frame["customer_id"]].to_numpy(), draw)
    # Independent of the split: every split has the same share of low draws, and the lowest draws
    # (the reference sample) are spread over the splits in the configured fractions.
    splits = split.assign(frame, split_data)
    for name in split.SPLITS:
        assert (draw[splits == name] < 0.25).mean() == pytest.approx(0.25, abs=0.04)
    lowest = pd.Series(splits[np.argsort(draw)[:4000]]).value_counts(normalize=True)
    assert lowest["train"] == pytest.approx(split_data.split.train, abs=0.03)


def _reference(df: pd.DataFrame, data, chunks: int = 1) -> pd.DataFrame:
    """The reference sample as the pipeline draws it: each block's lowest draws, merged."""
    import pyarrow as pa

    from foundry.data import blocks

    staged = [blocks.stage_block(pa.Table.from_pandas(c, preserve_index=False), data) for c in _chunks(df, chunks)]
    merged = blocks.merge_profiles([p for s in staged for p in blocks.block_profiles(s)])
    return blocks.reference_sample(merged["reference"], data)


def test_the_reference_sample_holds_only_rows_the_model_never_trained_on(frame, root):
    """Fitted training rows make the model's error rate and outputs look better than live traffic's."""
    data = config.load([f"storage.root={root}", "data.reference_rows=1000"]).data
    splits = split.assign(frame, data)
    pool = np.flatnonzero(split.in_reference_pool(splits))
    lowest = pool[np.argsort(split.reference_draw(frame, data)[pool], kind="stable")[:1000]]
    assert set(splits[lowest]) == set(split.REFERENCE_SPLITS)
    drawn = _reference(frame, data, chunks=3)
    assert list(drawn.columns) == [f.name for f in data.features] + [data.label]
    assert drawn.equals(frame.iloc[lowest][list(drawn.columns)].reset_index(drop=True))


def test_reference_draw_changes_with_seed(frame, root):
    a = config.load([f"storage.root={root}"]).data
    b = config.load([f"storage.root={root}", "data.split.seed=5"]).data
    da, db = split.reference_draw(frame, a), split.reference_draw(frame, b)
    assert abs(np.corrcoef(da, db)[0, 1]) < 0.05


def test_split_is_stable_across_releases(frame, cfg):
    """Changing how rows hash would silently move rows between existing data sets' splits."""
    cols = split.key_columns(cfg.data)
    assert cfg.data.split.seed == 0
    h = pd.util.hash_pandas_object(frame[cols], index=False).to_numpy(np.uint64)
    salt = np.uint64(int.from_bytes(hashlib.blake2b(b"split:0", digest_size=8).digest(), "little"))
    u = split._mix64(h ^ salt) / 2.0**64
    expected = np.where(u < 0.8, "train", np.where(u < 0.9, "val", "test"))
    assert (split.assign(frame, cfg.data) == expected).all()


def _integer_keyed(rows: int, duplicate_fraction: float = 0.0, seed: int = 0) -> pd.DataFrame:
    """The churn rows with an integer id key (the most common kind of key), optionally with exact duplicates."""
    df = generate("churn", "baseline", rows, seed).drop(columns=["customer_id"])
    df.insert(0, "account", np.arange(10_000, 10_000 + len(df), dtype=np.int64))
    if duplicate_fraction:
        rng = np.random.default_rng(seed)
        copies = df.iloc[rng.choice(len(df), int(len(df) * duplicate_fraction), replace=False)]
        df = pd.concat([df, copies], ignore_index=True).sample(frac=1.0, random_state=seed).reset_index(drop=True)
    return df


def test_an_integer_key_follows_the_seed_and_leaves_a_full_reference_pool(root):
    """pandas' hash_key salts only strings: with an integer key the seed did nothing, and the reference
    draw equalled the split draw, so a held-out pool of more than ~7,500 rows gave a reference of 0 rows."""
    df = _integer_keyed(60_000)
    a, b = (config.load([f"storage.root={root}", "data.split.key=account", f"data.split.seed={s}"]).data
            for s in (0, 1))
    assert (split.assign(df, a) != split.assign(df, b)).mean() > 0.2  # the seed moves rows
    pool = int(split.in_reference_pool(split.assign(df, a)).sum())
    assert pool > 10_000
    assert len(_reference(df, a, chunks=4)) == a.reference_rows
    assert abs(np.corrcoef(split.reference_draw(df, a), split._uniform(split.row_hashes(df, ["account"]),
                                                                        "split", 0))[0, 1]) < 0.02


def test_a_composite_key_keeps_rows_of_one_key_together(root):
    data = config.load([f"storage.root={root}", "data.split.key=[region,plan]"]).data
    assert split.key_columns(data) == ["region", "plan"]
    df = generate("churn", "baseline", 5000, 0)
    groups = pd.DataFrame({"k": df["region"] + "/" + df["plan"], "s": split.assign(df, data)})
    assert (groups.groupby("k")["s"].nunique() == 1).all()


def test_the_reference_sample_matches_the_held_out_population_even_with_duplicates(root):
    """Half the rows have an exact copy and there is no key: duplicates share a split (no leakage), but
    must be drawn into the reference sample independently, or the sample is a cluster sample whose
    category shares wander off the population's (a false alarm after 1,720 clean rows)."""
    df = _integer_keyed(12_000, duplicate_fraction=1.0).drop(columns=["account"])
    data = config.load([f"storage.root={root}", "data.split.key=null"]).data
    splits = split.assign(df, data)
    held_out = df[split.in_reference_pool(splits)]
    draw = split.reference_draw(df, data)
    # Every copy of a row is its own draw: copies agree no more often than independent draws would.
    content = split.row_hashes(df, split.key_columns(data))
    both = pd.DataFrame({"h": content, "low": draw < 0.3}).groupby("h")["low"].agg(["size", "sum"])
    pairs = both[both["size"] == 2]
    assert ((pairs["sum"] == 1).mean()) == pytest.approx(2 * 0.3 * 0.7, abs=0.03)
    half = config.load([f"storage.root={root}", "data.split.key=null",
                        f"data.reference_rows={len(held_out) // 2}"]).data
    drawn = _reference(df, half)
    assert len(drawn) == len(held_out) // 2
    for column in ("plan", "contract", "region"):
        population = held_out[column].value_counts(normalize=True)
        sample = drawn[column].value_counts(normalize=True)
        assert (sample - population).abs().max() < 0.02, column


def test_large_seeds_do_not_collide(frame, root):
    """Seeds too long for pandas' 16-character hash key used to be truncated: 10**16 and 2 * 10**16
    gave the same split, and the reference draw equalled the split draw."""
    a, b = (config.load([f"storage.root={root}", f"data.split.seed={s}"]).data for s in (10**16, 2 * 10**16))
    assert (split.assign(frame, a) != split.assign(frame, b)).mean() > 0.2
    splits = split.assign(frame, a)
    draw = split.reference_draw(frame, a)
    assert not np.array_equal(draw, split.reference_draw(frame, b))
    lowest = pd.Series(splits[np.argsort(draw)[:4000]]).value_counts(normalize=True)
    assert lowest["test"] == pytest.approx(0.1, abs=0.03)


# ======================================================================= preprocessor

def test_fit_over_chunks_equals_fit_over_one(train, cfg):
    one = _fit(train, cfg.data, 1)
    many = _fit(train, cfg.data, 6)
    assert [c.categories for c in many.categorical] == [c.categories for c in one.categorical]
    for a, b in zip(one.numeric, many.numeric, strict=True):
        assert (a.name, a.add_missing_indicator) == (b.name, b.add_missing_indicator)
        assert b.mean == pytest.approx(a.mean, rel=1e-9)
        assert b.std == pytest.approx(a.std, rel=1e-9)


def test_fit_matches_pandas_statistics(train, cfg):
    fitted = _fit(train, cfg.data, 4)
    assert [n.name for n in fitted.numeric] == _numeric(cfg.data)
    assert [c.name for c in fitted.categorical] == _categorical(cfg.data)
    for enc in fitted.numeric:
        col = train[enc.name].astype(float)
        assert enc.mean == pytest.approx(col.mean(), rel=1e-9)  # nulls skipped
        assert enc.std == pytest.approx(col.std(ddof=0), rel=1e-6)
    for enc in fitted.categorical:
        assert enc.categories == sorted(train[enc.name].dropna().astype(str).unique())
        assert enc.cardinality == train[enc.name].nunique() + 1


def test_fit_with_a_chunk_missing_all_values(train, cfg):
    """A batch where a nullable column is all-null (or no rows at all) must not skew the fit."""
    empty = train.iloc[:0]
    nulls = train.iloc[:50].copy()
    nulls["data_usage_gb"] = np.nan
    rest = train.iloc[50:]
    fitted = prep.fit([prep.partial_stats(p, cfg.data) for p in (empty, nulls, rest)], cfg.data)
    usage = next(n for n in fitted.numeric if n.name == "data_usage_gb")
    assert usage.mean == pytest.approx(rest["data_usage_gb"].mean(), rel=1e-9)


def test_numerics_standardized_on_train(train, cfg):
    fitted = _fit(train, cfg.data, 3)
    x = fitted.transform(train)["x_num"]
    assert x.dtype == np.float32
    for i, name in enumerate(_numeric(cfg.data)):
        present = train[name].notna().to_numpy()
        assert x[present, i].mean() == pytest.approx(0.0, abs=1e-4), name
        assert x[present, i].std() == pytest.approx(1.0, abs=1e-3), name
        assert (x[~present, i] == 0.0).all(), name  # imputed with the (scaled) mean


def test_nullable_features_get_missing_indicator(train, cfg):
    fitted = _fit(train, cfg.data)
    numeric = _numeric(cfg.data)
    nullable = [f.name for f in cfg.data.features if f.type is FeatureType.numeric and f.nullable]
    assert nullable == ["data_usage_gb", "satisfaction"]
    assert fitted.numeric_width == len(numeric) + len(nullable)
    x = fitted.transform(train)["x_num"]
    assert x.shape == (len(train), fitted.numeric_width)
    for j, name in enumerate(nullable):
        indicator = x[:, len(numeric) + j]
        assert train[name].isna().any()
        assert np.array_equal(indicator, train[name].isna().to_numpy().astype("float32")), name


def test_categories_nulls_and_unseen_map_to_zero(train, cfg):
    fitted = _fit(train, cfg.data)
    rows = train.iloc[:6].copy()
    rows["payment_method"] = ["card", "crypto", None, "paypal", np.nan, "check"]
    rows["region"] = ["west", "north", "central", None, "east", "south"]
    rows["satisfaction"] = [np.nan, np.inf, 5.0, "bad", None, 1.0]  # unreadable numbers are missing too
    enc = fitted.transform(rows)
    cats = {c.name: c.categories for c in fitted.categorical}
    pm = _categorical(cfg.data).index("payment_method")
    rg = _categorical(cfg.data).index("region")
    expect_pm = [cats["payment_method"].index(v) + 1 if v in cats["payment_method"] else prep.UNKNOWN_INDEX
                 for v in rows["payment_method"]]
    assert enc["x_cat"][:, pm].tolist() == expect_pm
    assert enc["x_cat"][:, pm].tolist()[1:3] == [0, 0]
    assert enc["x_cat"][:, rg].tolist()[2:4] == [0, 0]
    assert (enc["x_cat"][:, rg][[0, 1, 4, 5]] > 0).all()
    sat = _numeric(cfg.data).index("satisfaction")
    sat_ind = len(_numeric(cfg.data)) + 1
    assert enc["x_num"][:, sat_ind].tolist() == [1, 1, 0, 1, 1, 0]
    assert enc["x_num"][[0, 1, 3, 4], sat].tolist() == [0, 0, 0, 0]
    assert np.isfinite(enc["x_num"]).all()


def test_categorical_encoding_is_one_based_in_sorted_order(train, cfg):
    fitted = _fit(train, cfg.data)
    x_cat = fitted.transform(train)["x_cat"]
    assert x_cat.dtype == np.int64
    for j, enc in enumerate(fitted.categorical):
        expected = train[enc.name].map({v: i + 1 for i, v in enumerate(enc.categories)}).to_numpy()
        assert np.array_equal(x_cat[:, j], expected)
        assert x_cat[:, j].max() == len(enc.categories)


def test_numeric_categories_read_as_strings(tmp_path, train):
    """Categories stored as ints in one batch and as floats (CSV with nulls) in another are one category."""
    data = config.load([f"storage.root={tmp_path}", "data.features.8.values=[1,2,3]"]).data
    coded = train.copy()
    coded["plan"] = coded["plan"].map({"basic": 1, "standard": 2, "premium": 3})
    as_float = coded.iloc[:100].copy()
    as_float["plan"] = as_float["plan"].astype(float)
    as_float.loc[0, "plan"] = np.nan
    fitted = prep.fit([prep.partial_stats(as_float, data), prep.partial_stats(coded.iloc[100:], data)], data)
    assert fitted.categorical[0].categories == ["1", "2", "3"]
    x = fitted.transform(as_float)["x_cat"][:, 0]
    assert x[0] == 0
    assert np.array_equal(x[1:], coded["plan"].iloc[1:100].to_numpy())


def test_json_round_trip(train, ltv_cfg):
    fitted = _fit(train, ltv_cfg.data, 3)
    text = fitted.to_json()
    json.loads(text)  # plain JSON
    back = prep.Preprocessor.from_json(text)
    assert back == fitted
    a, b = fitted.transform_with_label(train), back.transform_with_label(train)
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k], b[k]), k
    assert np.array_equal(fitted.decode_regression(a["y"]), back.decode_regression(b["y"]))


def test_binary_label_encoding(train, cfg):
    fitted = _fit(train, cfg.data)
    assert fitted.classes == ["0", "1"] and fitted.output_width == 1
    y = fitted.encode_label(train["churned"])
    assert y.dtype == np.float32
    assert np.array_equal(y, train["churned"].to_numpy().astype("float32"))
    # The same labels read as floats (a CSV label column) encode the same.
    assert np.array_equal(fitted.encode_label(train["churned"].astype(float)), y)


def test_multiclass_label_encoding(train, seg_cfg):
    fitted = _fit(train, seg_cfg.data)
    classes = list(seg_cfg.data.classes)
    assert fitted.classes == classes and fitted.output_width == len(classes)
    y = fitted.encode_label(train["segment"])
    assert y.dtype == np.int64
    assert np.array_equal(y, train["segment"].map(classes.index).to_numpy())


def test_regression_label_standardized_and_decoded(train, ltv_cfg):
    fitted = _fit(train, ltv_cfg.data, 5)
    assert fitted.classes is None and fitted.output_width == 1
    label = train["lifetime_value"].to_numpy(dtype=float)
    assert fitted.label_mean == pytest.approx(label.mean(), rel=1e-9)
    assert fitted.label_std == pytest.approx(label.std(), rel=1e-6)
    y = fitted.encode_label(train["lifetime_value"])
    assert y.dtype == np.float32
    assert y.mean() == pytest.approx(0.0, abs=1e-4)
    assert y.std() == pytest.approx(1.0, abs=1e-3)
    assert np.allclose(fitted.decode_regression(y.astype(float)), label, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize(("which", "column", "bad"), [("seg", "segment", "vip"), ("binary", "churned", 7)])
def test_encode_label_unknown_class_raises(train, cfg, seg_cfg, which, column, bad):
    data = seg_cfg.data if which == "seg" else cfg.data
    fitted = _fit(train, data)
    values = train[column].iloc[:10].astype(object).copy()
    values.iloc[4] = bad
    with pytest.raises(ValueError, match=str(bad)) as info:
        fitted.encode_label(values)
    assert column in str(info.value)


# ======================================================================= model + predictor

def _save(tmp_path, spec: dict, model: TabularMLP, fitted: prep.Preprocessor):
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / WEIGHTS_FILE))
    (tmp_path / SPEC_FILE).write_text(json.dumps(spec))
    (tmp_path / PREPROCESSOR_FILE).write_text(fitted.to_json())
    return tmp_path


def _build(data, model_cfg, train, seed: int = 0):
    fitted = _fit(train, data, 2)
    spec = model_spec(model_cfg, fitted)
    torch.manual_seed(seed)
    model = build_model(spec)
    return fitted, spec, model


def _in_memory_outputs(model: TabularMLP, fitted: prep.Preprocessor, df: pd.DataFrame) -> np.ndarray:
    enc = fitted.transform(df)
    model.eval()
    with torch.no_grad():
        return model(torch.from_numpy(enc["x_num"]), torch.from_numpy(enc["x_cat"])).numpy()


def test_model_spec_shapes(train, cfg):
    fitted = _fit(train, cfg.data)
    spec = model_spec(cfg.model, fitted)
    assert spec["numeric_width"] == fitted.numeric_width == 10
    assert spec["cardinalities"] == [train[c].nunique() + 1 for c in _categorical(cfg.data)]
    assert all(1 <= d <= cfg.model.max_embedding_dim for d in spec["embedding_dims"])
    assert spec["hidden_sizes"] == list(cfg.model.hidden_sizes)
    assert spec["output_width"] == 1
    json.dumps(spec)
    assert embedding_dim(10_000, 16) == 16 and embedding_dim(2, 16) >= 1
    model = build_model(spec)
    assert model.net[0].in_features == spec["numeric_width"] + sum(spec["embedding_dims"])
    assert model.net[-1].out_features == 1
    with pytest.raises(ValueError, match="transformer"):
        build_model({**spec, "arch": "transformer"})


def test_predictor_round_trip_binary(tmp_path, train, frame, cfg):
    fitted, spec, model = _build(cfg.data, cfg.model, train)
    predictor = Predictor.from_dir(_save(tmp_path, spec, model, fitted))
    rows = frame.iloc[:500]
    pred = predictor.predict(rows)
    expected = _in_memory_outputs(model, fitted, rows)
    assert expected.std() > 0  # a constant output could hide a wrong weight mapping
    assert np.allclose(pred.outputs, expected, atol=1e-6)
    assert pred.proba.shape == (500, 2)
    assert np.allclose(pred.proba.sum(axis=1), 1.0)
    assert np.allclose(pred.proba[:, 1], 1 / (1 + np.exp(-expected.reshape(-1))), atol=1e-6)
    assert set(pred.values) <= set(cfg.data.classes)
    assert list(pred.values) == [cfg.data.classes[int(i)] for i in expected.reshape(-1) > 0]
    assert np.array_equal(pred.index, (expected.reshape(-1) > 0).astype(int))


def test_predictor_handles_unseen_and_null_inputs(tmp_path, train, frame, cfg):
    fitted, spec, model = _build(cfg.data, cfg.model, train)
    predictor = Predictor.from_dir(_save(tmp_path, spec, model, fitted))
    rows = frame.iloc[:4].copy()
    rows["payment_method"] = ["crypto", None, "card", "card"]
    rows["satisfaction"] = [np.nan, 3.0, None, 9.0]
    rows["region"] = ["central", "north", np.nan, "west"]
    pred = predictor.predict(rows)
    assert np.isfinite(pred.outputs).all()
    assert np.allclose(pred.outputs, _in_memory_outputs(model, fitted, rows), atol=1e-6)


def test_predictor_round_trip_multiclass(tmp_path, train, frame, seg_cfg):
    fitted, spec, model = _build(seg_cfg.data, seg_cfg.model, train, seed=3)
    pred = Predictor.from_dir(_save(tmp_path, spec, model, fitted)).predict(frame.iloc[:300])
    expected = _in_memory_outputs(model, fitted, frame.iloc[:300])
    assert np.allclose(pred.outputs, expected, atol=1e-6)
    assert pred.proba.shape == (300, 3)
    assert np.allclose(pred.proba.sum(axis=1), 1.0)
    assert np.array_equal(pred.index, expected.argmax(axis=1))
    assert list(pred.values) == [seg_cfg.data.classes[i] for i in expected.argmax(axis=1)]


def test_predictor_regression_in_label_units(tmp_path, train, frame, ltv_cfg):
    fitted, spec, model = _build(ltv_cfg.data, ltv_cfg.model, train, seed=1)
    label = train["lifetime_value"].to_numpy(dtype=float)
    rows = frame.iloc[:200]
    (tmp_path / "a").mkdir()
    pred = Predictor.from_dir(_save(tmp_path / "a", spec, model, fitted)).predict(rows)
    assert pred.proba is None and pred.index is None
    raw = _in_memory_outputs(model, fitted, rows).reshape(-1)
    assert np.allclose(pred.values, raw * label.std() + label.mean(), rtol=1e-5)
    # A network that outputs 0 (the standardized mean) predicts the training mean, in label units.
    with torch.no_grad():
        model.net[-1].weight.zero_()
        model.net[-1].bias.zero_()
    (tmp_path / "b").mkdir()
    flat = Predictor.from_dir(_save(tmp_path / "b", spec, model, fitted)).predict(rows)
    assert np.allclose(flat.values, label.mean(), rtol=1e-9)


def test_predictor_from_in_memory_state_matches_from_dir(tmp_path, train, frame, cfg):
    fitted, spec, model = _build(cfg.data, cfg.model, train, seed=2)
    direct = Predictor(spec, model.state_dict(), fitted).predict(frame.iloc[:100])
    loaded = Predictor.from_dir(_save(tmp_path, spec, model, fitted)).predict(frame.iloc[:100])
    assert np.array_equal(direct.outputs, loaded.outputs)
    other = _build(cfg.data, cfg.model, train, seed=9)[2]
    assert not np.allclose(Predictor(spec, other.state_dict(), fitted).predict(frame.iloc[:100]).outputs,
                           loaded.outputs)


# ======================================================================= tasks

def test_primary_metrics():
    assert PRIMARY_METRIC[Task.binary] == "roc_auc" and HIGHER_IS_BETTER["roc_auc"]
    assert PRIMARY_METRIC[Task.regression] == "rmse" and not HIGHER_IS_BETTER["rmse"]


def test_evaluate_reports_each_primary_metric():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    logits = (y - 0.5) * 2 + rng.normal(0, 1, 200)
    proba = probabilities(Task.binary, logits)
    m = evaluate(Task.binary, y, proba, proba.argmax(axis=1))
    assert m["roc_auc"] > 0.7 and m["rows"] == 200
    y3 = rng.integers(0, 3, 300)
    proba3 = probabilities(Task.multiclass, np.eye(3)[y3] * 2 + rng.normal(0, 1, (300, 3)))
    m3 = evaluate(Task.multiclass, y3, proba3, proba3.argmax(axis=1))
    assert np.allclose(proba3.sum(axis=1), 1.0)
    assert 0 < m3["macro_f1"] <= 1
    yr = rng.normal(100, 10, 100)
    mr = evaluate(Task.regression, yr, None, yr + 2.0)
    assert mr["rmse"] == pytest.approx(2.0) and mr["mae"] == pytest.approx(2.0)
    for task, metrics in ((Task.binary, m), (Task.multiclass, m3), (Task.regression, mr)):
        assert PRIMARY_METRIC[task] in metrics and PRIMARY_METRIC[task] in HIGHER_IS_BETTER
