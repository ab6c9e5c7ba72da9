"""The typed Hydra config: every shipped option composes and validates, and every kind of mistake
fails with a ConfigError that names the key to fix (before any Ray work could start)."""

from __future__ import annotations

import copy
import dataclasses
import importlib
import pkgutil
from pathlib import Path

import pytest
import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf

from foundry import config
from foundry.config import (
    CONF_DIR,
    ClusterConfig,
    DataConfig,
    DemoConfig,
    DriftConfig,
    FoundryConfig,
    ModelConfig,
    ServeConfig,
    SourceFormat,
    StorageConfig,
    Task,
    TrainerConfig,
    TuneConfig,
)
from foundry.config.common import Bounds, bounded, check_bounds, field_bounds
from foundry.errors import ConfigError

SECTION_TYPES = {"data": DataConfig, "model": ModelConfig, "trainer": TrainerConfig,
                 "storage": StorageConfig, "cluster": ClusterConfig, "serve": ServeConfig, "drift": DriftConfig,
                 "tune": TuneConfig, "demo": DemoConfig}


def _root_defaults() -> list:
    return yaml.safe_load((CONF_DIR / "config.yaml").read_text())["defaults"]


def _group_options() -> list[tuple[str, str]]:
    """(group, option) for every YAML file of every config group except experiments (found on disk)."""
    out = []
    for group_dir in sorted(p for p in CONF_DIR.iterdir() if p.is_dir() and p.name != "experiment"):
        out += [(group_dir.name, f.stem) for f in sorted(group_dir.glob("*.yaml"))]
    return out


def _experiments() -> list[str]:
    return sorted(f.stem for f in (CONF_DIR / "experiment").glob("*.yaml"))


def _leaves(node, prefix: str = ""):
    """Dotted paths and values of the scalar / scalar-list leaves of a plain YAML mapping."""
    for key, value in node.items():
        if key == "defaults":
            continue
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from _leaves(value, f"{path}.")
        elif isinstance(value, list) and any(isinstance(v, dict | list) for v in value):
            continue  # lists of mappings (features) get schema defaults filled in; checked elsewhere
        elif isinstance(value, str) and "${" in value:
            continue  # interpolations are checked by resolving them in to_typed
        else:
            yield path, value


def _plain(value):
    return OmegaConf.to_container(value) if isinstance(value, DictConfig | ListConfig) else value


def _same(expected, actual) -> bool:
    """YAML value vs. the composed (schema-typed) value: 1 == 1.0, [0, 1] matches ['0', '1']."""
    if isinstance(expected, list):
        return isinstance(actual, list) and len(expected) == len(actual) and all(
            _same(e, a) for e, a in zip(expected, actual, strict=True))
    if hasattr(actual, "value"):  # an Enum
        actual = actual.value
    return expected == actual or str(expected) == str(actual)


@pytest.fixture
def hermetic_env(monkeypatch, tmp_path):
    """conf/storage/local.yaml reads FOUNDRY_STORAGE; point it at a temporary folder."""
    monkeypatch.setenv("FOUNDRY_STORAGE", str(tmp_path))
    return tmp_path


def _errors(overrides: list[str], tmp_path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        config.load([f"storage.root={tmp_path}", *overrides])
    return str(info.value)


# ----- every shipped option composes

def test_conf_groups_are_discovered():
    found = {g for g, _ in _group_options()}
    # Each group selected in the root defaults list must have been found on disk (and vice versa).
    defaults = {next(iter(d)) for d in _root_defaults() if isinstance(d, dict)}
    assert found == defaults
    assert _experiments(), "conf/experiment/ holds no experiment"


@pytest.mark.parametrize(("group", "option"), _group_options(), ids=lambda v: str(v))
def test_every_group_option_composes_and_validates(group, option, hermetic_env):
    composed = config.compose([f"{group}={option}"])
    assert isinstance(composed, DictConfig)
    typed = config.to_typed(composed)
    assert isinstance(typed, FoundryConfig)
    assert isinstance(getattr(typed, group), SECTION_TYPES[group])
    # The option's own values were applied (not just the schema's fallbacks).
    raw = yaml.safe_load((CONF_DIR / group / f"{option}.yaml").read_text()) or {}
    for path, value in _leaves(raw):
        actual = _plain(OmegaConf.select(composed, f"{group}.{path}"))
        assert _same(value, actual), f"{group}={option}: {group}.{path} is {actual!r}, file says {value!r}"


@pytest.mark.parametrize("name", _experiments())
def test_every_experiment_composes_and_validates(name, hermetic_env):
    composed = config.compose([f"+experiment={name}"])
    typed = config.to_typed(composed)
    assert isinstance(typed, FoundryConfig)
    raw = yaml.safe_load((CONF_DIR / "experiment" / f"{name}.yaml").read_text()) or {}
    for path, value in _leaves(raw):
        actual = _plain(OmegaConf.select(composed, path))
        assert _same(value, actual), f"+experiment={name}: {path} is {actual!r}, file says {value!r}"


def test_quick_experiment_overrides_model_group(hermetic_env):
    base = config.to_typed(config.compose([]))
    quick = config.to_typed(config.compose(["+experiment=quick"]))
    small = yaml.safe_load((CONF_DIR / "model" / "mlp_small.yaml").read_text())
    assert quick.model.hidden_sizes == small["hidden_sizes"]
    assert quick.data.source.synthetic.rows < base.data.source.synthetic.rows


def test_storage_root_comes_from_env(hermetic_env):
    typed = config.to_typed(config.compose([]))
    assert typed.storage.root == str(hermetic_env)
    assert typed.storage.layout.registry == str(hermetic_env.resolve() / "registry")
    assert typed.data.source.path.startswith(str(hermetic_env))


def test_data_variants_set_task_and_label(tmp_path):
    ltv = config.load([f"storage.root={tmp_path}", "data=churn_ltv"])
    seg = config.load([f"storage.root={tmp_path}", "data=churn_segment"])
    assert ltv.data.task is Task.regression and ltv.data.classes is None
    assert seg.data.task is Task.multiclass and len(seg.data.classes) == 3
    # Both inherit the churn features.
    base = config.load([f"storage.root={tmp_path}"])
    assert [f.name for f in ltv.data.features] == [f.name for f in base.data.features]


# ----- overrides

def test_brief_overrides(tmp_path):
    cfg = config.load([f"storage.root={tmp_path}", "trainer.num_workers=2", "model.hidden_sizes=[64,32]"])
    assert cfg.trainer.num_workers == 2
    assert cfg.model.hidden_sizes == [64, 32]
    cfg = config.load([f"storage.root={tmp_path}", "trainer.num_workers=3", "model.hidden_sizes=[8]"])
    assert cfg.trainer.num_workers == 3
    assert cfg.model.hidden_sizes == [8]


def test_unknown_key_names_it(tmp_path):
    assert "num_workrs" in _errors(["trainer.num_workrs=2"], tmp_path)


def test_unknown_group_option_is_config_error(tmp_path):
    assert "no_such_data" in _errors(["data=no_such_data"], tmp_path)


def test_wrong_type_names_key(tmp_path):
    msg = _errors(["trainer.num_workers=abc"], tmp_path)
    assert "trainer.num_workers" in msg


@pytest.mark.parametrize(("overrides", "key"), [
    (["trainer.num_workers=-1"], "trainer.num_workers"),
    (["trainer.num_workers=0"], "trainer.num_workers"),
    (["model.dropout=1.5"], "model.dropout"),
    (["data.split.train=0.5"], "data.split"),
    (["data.split.val=0.3"], "data.split"),
    (["data.validation.max_null_fraction=2"], "data.validation.max_null_fraction"),
    (["data.classes=[a,b,c]"], "data.classes"),
    (["data.features.0.min=200"], "data.features[0] (age)"),
    (["data.features.1.max=-5"], "data.features[1] (tenure_months)"),
    (["data.features.0.name=tenure_months"], "data.features"),
    (["trainer.optimizer=rmsprop"], "trainer.optimizer"),
    (["model.activation=tanh"], "model.activation"),
    (["trainer.lr=0"], "trainer.lr"),
    (["data=churn_ltv", "data.classes=[a,b]"], "data.classes"),
    (["data.classes=[1,1]"], "data.classes"),
    (["data=churn_segment", "data.classes=[value,growth,value]"], "data.classes"),
    (["drift.detectors.tabular.p_val=1.5"], "drift.detectors.tabular.p_val"),
    (["drift.detectors.concept.p_val=0"], "drift.detectors.concept.p_val"),
    (["drift.detectors.concept.window_sizes=[]"], "drift.detectors.concept.window_sizes"),
    (["drift.detectors.online.ert=0"], "drift.detectors.online.ert"),
    (["drift.window.size=5"], "drift.window.size"),
    (["drift.alarm.method=windows", "drift.window.votes_required=9"], "drift.window.votes_required"),
    (["drift.retrain.max_retries=-1"], "drift.retrain.max_retries"),
    (["drift.retrain.max_rows=10"], "drift.retrain.max_rows"),
    (["drift.retrain.backoff_factor=0.5"], "drift.retrain.backoff_factor"),
    (["drift.sink.buffer_rows=0"], "drift.sink.buffer_rows"),
    (["drift.monitor.name_prefix=a b"], "drift.monitor.name_prefix"),
    (["drift.monitor.retain_rows=10"], "drift.monitor.retain_rows"),
    (["drift.detectors.multivariate.method=pca"], "drift.detectors.multivariate.method"),
    (["data=churn_ltv", "drift.detectors.concept.method=fet_online"], "drift.detectors.concept.method"),
])
def test_impossible_values_name_their_key(overrides, key, tmp_path):
    assert key in _errors(overrides, tmp_path)


def test_duplicate_feature_error_names_the_feature(tmp_path):
    assert "tenure_months" in _errors(["data.features.0.name=tenure_months"], tmp_path)


def test_split_error_reports_the_sum(tmp_path):
    assert "0.7" in _errors(["data.split.train=0.5"], tmp_path)


def test_valid_edge_values_pass(tmp_path):
    cfg = config.load([f"storage.root={tmp_path}", "data.split.train=0.6", "data.split.val=0.2",
                       "data.split.test=0.2", "data.validation.max_null_fraction=1", "model.dropout=0",
                       "trainer.optimizer=sgd"])
    assert (cfg.data.split.train, cfg.data.split.val, cfg.data.split.test) == (0.6, 0.2, 0.2)
    assert cfg.data.validation.max_null_fraction == 1.0


# ----- ranges declared on the fields (bounded / check_bounds in foundry/config/common.py)

@pytest.mark.parametrize(("override", "message"), [
    ("trainer.epochs=0", "trainer.epochs: must be >= 1, got 0"),
    ("serve.feedback.window_s=0", "serve.feedback.window_s: must be > 0, got 0.0"),
    ("drift.alarm.reference_confidence=1", "drift.alarm.reference_confidence: must be in (0, 1), got 1.0"),
    ("storage.tables.live_flush_s=601", "storage.tables.live_flush_s: must be in (0, 600], got 601.0"),
    ("promotion.live.confidence=0.4", "promotion.live.confidence: must be in [0.5, 1), got 0.4"),
    ("cluster.autoscaling.worker_types.cpu_worker.min_workers=-1",
     "cluster.autoscaling.worker_types.cpu_worker.min_workers: must be >= 0, got -1"),
])
def test_declared_ranges_name_the_full_key(override, message, tmp_path):
    extra = ["cluster=kuberay"] if override.startswith("cluster.") else []
    assert message in _errors([*extra, override], tmp_path)


@dataclasses.dataclass
class _Probe:
    at_least: int = bounded(1, ge=1)
    above: float = bounded(0.5, gt=0)
    at_most: float = bounded(1.0, le=1)
    below: float = bounded(0.0, lt=1)
    open_interval: float = bounded(0.5, gt=0, lt=1)
    closed_interval: float = bounded(0.0, ge=0, le=1)
    optional: int | None = bounded(None, ge=1)
    plain: int = -5  # no declared range: not checked


@pytest.mark.parametrize(("name", "value", "message"), [
    ("at_least", 0, "must be >= 1, got 0"),
    ("above", 0.0, "must be > 0, got 0.0"),
    ("above", -1.0, "must be > 0, got -1.0"),
    ("at_most", 1.5, "must be <= 1, got 1.5"),
    ("below", 1, "must be < 1, got 1"),
    ("open_interval", 1.5, "must be in (0, 1), got 1.5"),
    ("open_interval", 0, "must be in (0, 1), got 0"),
    ("closed_interval", 2, "must be in [0, 1], got 2"),
    ("optional", 0, "must be >= 1, got 0"),
])
def test_check_bounds_rejects_each_kind_of_bound(name, value, message):
    check_bounds(_Probe(), "probe")  # the defaults, the edges and a null are all in range
    check_bounds(_Probe(at_least=1, above=1e-9, at_most=1, below=0.999, closed_interval=1, optional=None), "probe")
    with pytest.raises(ConfigError) as info:
        check_bounds(dataclasses.replace(_Probe(), **{name: value}), "probe.section")
    assert str(info.value) == f"probe.section.{name}: {message}"


def test_bounded_fields_stay_plain_fields_for_omegaconf():
    """OmegaConf (and so Hydra's ConfigStore schema) ignores the metadata: defaults, types and nulls as before."""
    assert OmegaConf.to_object(OmegaConf.structured(_Probe)) == _Probe()
    merged = OmegaConf.merge(OmegaConf.structured(_Probe), {"at_least": 0, "optional": 3})
    probe = OmegaConf.to_object(merged)  # a range is not a type: OmegaConf takes it, check_bounds refuses it
    assert (probe.at_least, probe.optional) == (0, 3)
    with pytest.raises(ConfigError, match=r"^p\.at_least: must be >= 1, got 0$"):
        check_bounds(probe, "p")
    with pytest.raises(Exception):  # noqa: B017 - still typed: OmegaConf refuses a string for an int
        OmegaConf.merge(OmegaConf.structured(_Probe), {"at_least": "many"})
    assert field_bounds(_Probe)["open_interval"] == Bounds(gt=0, lt=1)
    for bad in ({"ge": 0, "gt": 0}, {"le": 1, "lt": 1}, {}):
        with pytest.raises(ValueError):
            bounded(0, **bad)


def _bounded_classes() -> set[type]:
    """Every dataclass of foundry/config/ that declares a range on a field."""
    found = set()
    for info in pkgutil.iter_modules(config.__path__):
        module = importlib.import_module(f"foundry.config.{info.name}")
        found |= {obj for obj in vars(module).values() if isinstance(obj, type) and dataclasses.is_dataclass(obj)
                  and obj.__module__ == module.__name__ and field_bounds(obj)}
    return found


def _bounded_fields(node, prefix: str = ""):
    """(full key, owning object, field name, bounds) of every bounded field in a typed config tree."""
    if dataclasses.is_dataclass(node):
        for name, bounds in field_bounds(node).items():
            yield f"{prefix}{name}", node, name, bounds
        for f in dataclasses.fields(node):
            yield from _bounded_fields(getattr(node, f.name), f"{prefix}{f.name}.")
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from _bounded_fields(value, f"{prefix}{key}.")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _bounded_fields(value, f"{prefix}{i}.")


def _just_outside(bounds: Bounds, annotation: str):
    step = 1e-6 if "float" in annotation else 1
    if bounds.ge is not None:
        return bounds.ge - step
    if bounds.gt is not None:
        return bounds.gt
    return bounds.le + step if bounds.le is not None else bounds.lt


def test_every_declared_range_is_checked(tmp_path):
    """Each bounded field, set just outside its range in an otherwise valid config, is refused with its full
    key: a dataclass that declares ranges but whose validate() forgets check_bounds fails here."""
    # kuberay: the head and the RayJob are checked on remote kinds only; tune: only when enabled.
    base = config.load([f"storage.root={tmp_path}", "cluster=kuberay", "tune=quick"])
    assert base.tune.enabled and base.data.source.synthetic is not None and base.cluster.autoscaling.worker_types
    seen, reached = [], set()
    for key, owner, name, bounds in _bounded_fields(base):
        reached.add(type(owner))
        bad = copy.deepcopy(base)
        target = next(o for k, o, n, _ in _bounded_fields(bad) if k == key)
        annotation = next(f.type for f in dataclasses.fields(owner) if f.name == name)
        setattr(target, name, _just_outside(bounds, str(annotation)))
        with pytest.raises(ConfigError) as info:
            config.validate(bad)
        assert str(info.value).startswith(f"{key}: must be "), str(info.value)
        seen.append(key)
    assert len(seen) > 100 and "trainer.epochs" in seen and "drift.detectors.online.reference_rows" in seen
    assert reached == _bounded_classes(), "bounded fields this test's config never reaches"


# ----- a user's own data config, outside the repo

USER_DATA = """\
name: mydata
task: binary
label: bought
classes: ["n", "y"]
source:
  path: {csv}
  format: csv
split:
  key: user_id
validation:
  min_rows: 10
features:
  - {{name: price, type: numeric, min: 0}}
  - {{name: color, type: categorical, values: [red, green], on_unknown: allow}}
"""


def _user_conf(tmp_path: Path, text: str = USER_DATA) -> Path:
    conf = tmp_path / "myconf"
    (conf / "data").mkdir(parents=True)
    (conf / "data" / "mydata.yaml").write_text(text.format(csv=tmp_path / "mydata.csv"))
    return conf


def test_user_data_config_via_searchpath(tmp_path):
    conf = _user_conf(tmp_path)
    composed = config.compose([f"hydra.searchpath=[file://{conf}]", "data=mydata", f"storage.root={tmp_path}"])
    cfg = config.to_typed(composed)
    assert cfg.model_name == "mydata"
    assert cfg.data.label == "bought"
    assert cfg.data.classes == ["n", "y"]
    assert cfg.data.source.format is SourceFormat.csv
    assert cfg.data.source.path == str(tmp_path / "mydata.csv")
    assert cfg.data.source.synthetic is None
    assert [f.name for f in cfg.data.features] == ["price", "color"]
    assert cfg.data.split.key == "user_id"
    # Keys the user's file leaves out fall back to the schema defaults.
    assert cfg.data.features[0].nullable is False
    assert cfg.data.split.train == pytest.approx(0.8)
    # The rest of the tree still comes from the repo's conf/.
    assert cfg.trainer == config.load([f"storage.root={tmp_path}"]).trainer


def test_user_data_config_is_validated_too(tmp_path):
    conf = _user_conf(tmp_path, USER_DATA.replace("min: 0", "min: 5, max: 1"))
    with pytest.raises(ConfigError) as info:
        config.load([f"hydra.searchpath=[file://{conf}]", "data=mydata", f"storage.root={tmp_path}"])
    assert "data.features[0] (price)" in str(info.value)


def test_user_data_config_typo_names_key(tmp_path):
    conf = _user_conf(tmp_path, USER_DATA.replace("label: bought", "label: bought\nlabl: x"))
    with pytest.raises(ConfigError) as info:
        config.load([f"hydra.searchpath=[file://{conf}]", "data=mydata", f"storage.root={tmp_path}"])
    assert "labl" in str(info.value)


def test_user_data_config_not_found_without_searchpath(tmp_path):
    _user_conf(tmp_path)
    with pytest.raises(ConfigError) as info:
        config.compose(["data=mydata", f"storage.root={tmp_path}"])
    assert "mydata" in str(info.value)


# ----- to_typed / to_yaml

def test_to_typed_rejects_a_tree_without_the_schema():
    with pytest.raises(ConfigError):
        config.to_typed(OmegaConf.create({"model_name": "x"}))


def test_to_yaml_round_trips(tmp_path):
    cfg = config.load([f"storage.root={tmp_path}", "trainer.num_workers=3"])
    back = OmegaConf.create(config.to_yaml(cfg))
    assert back.trainer.num_workers == 3
    assert back.storage.root == str(tmp_path)
    assert back.data.task == "binary"
