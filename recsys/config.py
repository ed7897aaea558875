"""Run configuration: one typed tree, read from YAML and ``--set key=value`` overrides.

The tree has a section per stage of the data flow (``data``, ``split``, ``model``, ``train``,
``eval``, ``tracking``). Every section is a pydantic model that rejects unknown keys, so a typo
is an error naming the full key (``train.learnin_rate``) and listing the valid ones. The
``model`` section holds ``name`` plus that model's own hyper-parameters, validated against the
model's config class; the resolved config (every default filled in) is what a run records.
"""

from __future__ import annotations

import copy
import re
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from recsys.data.catalog import DataConfig
from recsys.data.split import SplitConfig
from recsys.errors import ConfigError
from recsys.eval.evaluator import DEFAULT_METRICS, validate_metric_name
from recsys.train.trainer import TrainConfig

T = TypeVar("T", bound=BaseModel)


_MERGE = "tag:yaml.org,2002:merge"


class _Loader(yaml.SafeLoader):
    """YAML for config files and ``--set`` values, with YAML 1.2's scalars: ``1e-3`` is a
    number, ``010`` is not octal eight and ``1:30`` not 90; ``yes``, ``on`` and ``2024-01-05``
    stay text (pydantic still reads them as a bool or a number where a key wants one), and so
    does a number with a leading zero (an id such as ``007``). A key given twice is an error."""

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict[Any, Any]:
        seen = set()
        for key_node, _ in getattr(node, "value", []):
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != _MERGE:
                if key_node.value in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key {key_node.value!r} is given twice", key_node.start_mark
                    )
                seen.add(key_node.value)
        return super().construct_mapping(node, deep=deep)


_YAML_1_1_ONLY = {f"tag:yaml.org,2002:{t}" for t in ("bool", "int", "float", "timestamp")}
_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in _YAML_1_1_ONLY]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"^(?:[-+]?(?:0|[1-9][0-9]*)|0x[0-9a-fA-F]+)$"),
    list("-+0123456789"),
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^(?:[-+]?(?:(?:0|[1-9][0-9]*)(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)


class _Dumper(yaml.SafeDumper):
    """Quotes every string that YAML 1.1 or :class:`_Loader` would read as another type, so a
    run's ``config.yaml`` reads back the same with either."""


_Dumper.yaml_implicit_resolvers = {
    first: [
        *yaml.SafeDumper.yaml_implicit_resolvers.get(first, []),
        *_Loader.yaml_implicit_resolvers.get(first, []),
    ]
    for first in {*yaml.SafeDumper.yaml_implicit_resolvers, *_Loader.yaml_implicit_resolvers}
}


def load_yaml(text: str) -> Any:
    """YAML text as data, read as run configs are (:class:`_Loader`: YAML 1.2 scalars, a
    key given twice is an error); search-space files use it too."""
    return yaml.load(text, Loader=_Loader)


def yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error on one line: what is wrong and where."""
    if not isinstance(exc, yaml.MarkedYAMLError) or not exc.problem:
        return " ".join(str(exc).split())
    mark = exc.problem_mark
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
    context = f"{exc.context}, " if exc.context else ""
    return f"{context}{exc.problem}{where}"


def validation_message(exc: ValidationError, model: type[BaseModel], prefix: str = "") -> str:
    """One readable line per problem, each naming the full dotted key."""
    problems = []
    for err in exc.errors():
        raised = (err.get("ctx") or {}).get("error")
        if isinstance(raised, ConfigError):
            # a nested validation (a model's own config) already named its keys
            problems.append(str(raised))
            continue
        loc = [str(p) for p in err["loc"]]
        key = ".".join([prefix, *loc] if prefix else loc) or "(config)"
        if err["type"] == "extra_forbidden":
            known = _known_keys(model, loc[:-1])
            hint = f" (known: {', '.join(known)})" if known else ""
            problems.append(f"unknown key {key!r}{hint}")
        elif not loc:
            # a check across several keys: its input is the whole section, not worth echoing,
            # and its message may name the keys itself
            msg = err["msg"].removeprefix("Value error, ")
            lead = (f"{prefix}.",) if prefix else tuple(f"{name}." for name in model.model_fields)
            problems.append(msg if msg.startswith(lead) else f"{key}: {msg}")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(f"{key}: {msg} (got {err.get('input')!r})")
    return "; ".join(problems)


def _known_keys(model: type[BaseModel], path: list[str]) -> list[str]:
    for part in path:
        field = model.model_fields.get(part)
        ann = field.annotation if field else None
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return []
        model = ann
    return sorted(model.model_fields)


def _numeric_only(annotation: Any) -> tuple[bool, bool]:
    """Whether a field typed ``annotation`` takes numbers but no booleans, and whether it is a
    sequence of them (``list[int]``, ``tuple[float, ...]``)."""
    origin = typing.get_origin(annotation)
    if origin in (list, tuple):
        args = [a for a in typing.get_args(annotation) if a is not Ellipsis]
        return (bool(args) and all(_numeric_only(a) == (True, False) for a in args), True)
    if origin in (typing.Union, types.UnionType):
        # numeric when every non-None member is the same numeric kind (``int | None``)
        kinds = {_numeric_only(a) for a in typing.get_args(annotation) if a is not type(None)}
        return kinds.pop() if len(kinds) == 1 else (False, False)
    if origin is typing.Annotated:
        return _numeric_only(typing.get_args(annotation)[0])
    return (annotation in (int, float), False)


def refuse_booleans_as_numbers(model: type[BaseModel], values: Any, prefix: str = "") -> None:
    """Raise :class:`ConfigError` for a boolean given to a numeric key of ``model`` (nested
    sections too). YAML reads ``true``/``yes``/``on`` as booleans and pydantic would take them
    for 1 (``model.embedding_size: true`` trained a one-dimensional model)."""
    if not isinstance(values, dict):
        return
    for name, value in values.items():
        field = model.model_fields.get(str(name))
        if field is None:
            continue
        key = f"{prefix}.{name}" if prefix else str(name)
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            refuse_booleans_as_numbers(annotation, value, key)
            continue
        numeric, sequence = _numeric_only(annotation)
        if not numeric:
            continue
        items = list(value) if sequence and isinstance(value, list | tuple) else [value]
        if any(isinstance(item, bool) for item in items):
            raise ConfigError(
                f"{key}: expected {'numbers' if sequence else 'a number'}, got {value!r} (YAML "
                "reads true/false, yes/no and on/off as booleans)"
            )


def validate(model: type[T], values: dict[str, Any], prefix: str = "") -> T:
    """``model(**values)``, with validation errors turned into :class:`ConfigError`; a boolean
    for a numeric key is one too (:func:`refuse_booleans_as_numbers`)."""
    refuse_booleans_as_numbers(model, values, prefix)
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(validation_message(exc, model, prefix)) from None


class EvalConfig(BaseModel):
    """Full-ranking evaluation settings (RecBole's ``topk``, ``metrics``)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    topk: list[int] = Field(default_factory=lambda: [10, 20])
    metrics: list[str] = Field(default_factory=lambda: list(DEFAULT_METRICS))
    batch_size: int = Field(4096, gt=0)
    """Users scored per batch (at most)."""
    memory_mb: float | None = Field(None, gt=0)
    """Memory budget of one evaluation batch; batches shrink to fit it (None: no budget)."""
    item_slices: bool = False
    """Also report every per-user metric on the head and tail item slices
    (``recall_at_20_tail``, ...; see :func:`recsys.eval.evaluator.tail_items`)."""
    tail_share: float = Field(0.2, ge=0, le=1)
    """The tail slice: the least popular items holding at most this share of training
    interactions."""
    tail_fraction: float | None = Field(None, ge=0, le=1)
    """Instead of ``tail_share``: the tail is this fraction of the items, least popular first."""
    mask_valid_at_test: bool = True
    """At test time, mask the user's validation items along with the training items
    (RecBole's protocol); false leaves them rankable, as MMRec does (BM3, FREEDOM): only
    training items are masked, so a validation item in the top K is a miss."""

    @model_validator(mode="after")
    def _names_valid(self) -> EvalConfig:
        if not self.topk or any(k <= 0 for k in self.topk):
            raise ValueError(f"topk must be a non-empty list of positive integers, got {self.topk}")
        for metric in self.metrics:
            for k in self.topk:
                validate_metric_name(f"{metric}_at_{k}")
        return self


class TrackingConfig(BaseModel):
    """MLflow settings."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    uri: str | None = None
    """Tracking URI; None means ``$RECSYS_TRACKING_URI`` or ``sqlite:///<output_dir>/mlflow.db``."""
    experiment: str = "recsys"


class RunConfig(BaseModel):
    """Everything one ``recsys train`` run needs."""

    model_config = ConfigDict(extra="forbid")

    data: DataConfig = Field(default_factory=DataConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    model: dict[str, Any] = Field(default_factory=lambda: {"name": "bpr"}, validate_default=True)
    """The default is resolved too, so a run's config records the model's defaults."""
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    output_dir: Path = Path("runs")
    run_name: str | None = None
    """The run folder's name under ``output_dir`` (a plain folder name); None:
    ``<model>-<dataset>-<time>``."""
    recommend_k: int = Field(10, gt=0)
    """Top-k recommendations per user written at the end of a run."""

    @field_validator("run_name")
    @classmethod
    def _run_name_plain(cls, value: str | None) -> str | None:
        # the run folder is output_dir / run_name: a path would put it elsewhere (`..`, an
        # absolute path) or under folders that do not exist
        if value is None:
            return None
        if (
            not value.strip()
            or value in (".", "..")
            or any(c in value for c in ("/", "\\", "\0"))
            or Path(value).is_absolute()
        ):
            raise ValueError(
                "must be a plain folder name, made under output_dir (no '/', '\\', '..' or "
                "absolute path)"
            )
        return value

    @field_validator("model")
    @classmethod
    def _model_resolved(cls, value: dict[str, Any]) -> dict[str, Any]:
        from recsys.models.base import build_config
        from recsys.models.registry import get_model_class

        values = dict(value)
        name = values.pop("name", None)
        if not name:
            raise ConfigError("model.name is required (see `recsys models`)")
        model_cls = get_model_class(str(name))
        config = build_config(model_cls.config_class, values)
        return {"name": str(name), **config.model_dump(mode="json")}

    @model_validator(mode="after")
    def _valid_metric_computed(self) -> RunConfig:
        metric, _, k = self.train.valid_metric.rpartition("_at_")
        if metric not in self.eval.metrics or int(k) not in self.eval.topk:
            raise ValueError(
                f"train.valid_metric={self.train.valid_metric!r} is not computed by eval "
                f"(metrics {self.eval.metrics}, topk {self.eval.topk})"
            )
        return self

    def model_params(self) -> dict[str, Any]:
        """The model's hyper-parameters, without ``name``."""
        return {k: v for k, v in self.model.items() if k != "name"}

    def to_yaml(self) -> str:
        return yaml.dump(self.model_dump(mode="json"), Dumper=_Dumper, sort_keys=False)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.learning_rate=0.01"`` -> (["train", "learning_rate"], 0.01); values are YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} is not of the form key=value")
    path = key.strip().split(".")
    if not all(part.strip() for part in path):
        raise ConfigError(f"override {text!r}: key {key.strip()!r} has an empty part")
    if raw.strip().startswith(("|", ">", "#")):
        # a YAML block scalar or comment on one line reads as '' or null, never what is meant
        # (data.sep=|): the text itself
        return path, raw.strip()
    try:
        value = load_yaml(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"override {text!r}: value is not valid YAML ({yaml_problem(exc)})"
        ) from None
    return path, value


def apply_overrides(values: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set each dotted ``key=value`` in a nested dict (creating sections as needed)."""
    out = copy.deepcopy(values) or {}
    for text in overrides:
        path, value = parse_override(text)
        node = out
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                raise ConfigError(f"override {text!r}: {part!r} is not a section")
            node = child
        node[path[-1]] = value
    return out


def load_config_dict(path: Path | None) -> dict[str, Any]:
    """Read a YAML config file into a dict (an empty dict for None)."""
    if path is None:
        return {}
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"config file {path} is a folder, not a YAML file")
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        values = load_yaml(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {yaml_problem(exc)}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not UTF-8 text ({exc.reason})") from None
    if not isinstance(values, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    # a scalar where a section belongs would otherwise surface later, blamed on an override
    for section in ("data", "split", "model", "train", "eval", "tracking"):
        if section in values and values[section] is None:
            del values[section]  # every key commented out: the section's defaults
        if section in values and not isinstance(values[section], dict):
            raise ConfigError(
                f"config file {path}: {section!r} must be a section (a mapping of keys), "
                f"got {values[section]!r}"
            )
    return values


def build_run_config(
    path: Path | None = None, overrides: list[str] | None = None, **sections: Any
) -> RunConfig:
    """Config file, then keyword sections (``model={"name": "bpr"}``), then ``--set`` overrides."""
    values = load_config_dict(path)
    for key, value in sections.items():
        if value is None:
            continue
        old = values.get(key)
        if isinstance(value, dict) and isinstance(old, dict):
            names = old.get("name"), value.get("name")
            if key == "model" and None not in names and names[0] != names[1]:
                # another model than the file's: the file's hyper-parameters are not its own
                values[key] = value
            else:
                values[key] = {**old, **value}
        else:
            values[key] = value
    values = apply_overrides(values, list(overrides or []))
    return validate(RunConfig, values)
