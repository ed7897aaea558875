"""Search-space files: typed distributions over dotted config keys, validated up front.

A space file is YAML with up to three sections::

    # tune/spaces/bpr.yaml
    fixed:                          # optional: constants applied to every trial
      train.epochs: 60
    params:                         # what the tuner samples, one dotted config key each
      model.embedding_size: {type: pow2, low: 16, high: 256}
      train.learning_rate: {type: loguniform, low: 1.0e-4, high: 1.0e-1}
      model.reg_weight: {type: choice, values: [0.0, 1.0e-5, 1.0e-4]}
    points:                         # optional: configurations to try first, in this order
      - {model.embedding_size: 64, train.learning_rate: 1.0e-3, model.reg_weight: 0.0}

Distributions (``type``):

============  ===========================================  ==================================
type          fields                                       samples
============  ===========================================  ==================================
choice        ``values``                                   one of the values, uniformly
grid          ``values``                                   every value (a grid axis)
uniform       ``low``, ``high``, optional ``q`` (``low``   a float in [low, high] (a
              and ``high`` multiples of it)                multiple of ``q``)
loguniform    ``low`` > 0, ``high``                        a float, uniform in log space
int           ``low``, ``high`` (inclusive), ``step``,     an integer in [low, high]
              ``log``
pow2          ``low``, ``high`` (powers of two), ``grid``  one of low, 2 low, ..., high
============  ===========================================  ==================================

Grid axes multiply: two grid keys of 4 values each make 16 configurations, each run
``num_samples`` times (with fresh draws of the other keys). ``pow2`` with ``grid: true`` is a
grid axis over the powers of two.

``points`` (Ray Tune's ``points_to_evaluate``) are complete configurations, one value per
``params`` key, that the first trials run instead of sampling (a known good configuration,
say, or an exact list of configurations in a chosen order); they count towards
``num_samples``. A space with grid axes cannot have points.

Tunable keys are ``model.<hyper-parameter>`` and ``train.<setting>`` (except the ones the
tuner controls: ``train.epochs``, ``train.device``, ``train.num_threads``, ``train.progress``
and ``train.valid_metric``, which belong in ``fixed`` or ``--set``). Every problem is a
:class:`~recsys.errors.ConfigError` naming the file and the key, and every candidate value
(each choice, each end of a range) is checked against the model's config before any trial
starts, so ``model.embedding_size: {type: choice, values: [0]}`` fails at once; so is what
Ray Tune refuses in a sampler (a ``q`` that does not divide ``low`` and ``high``: Ray's
``quniform`` rule). Checks of a trial's config as a whole (a model's own check of its
training settings) run on :meth:`SearchSpace.check_configurations` in ``recsys tune``.

PyYAML reads ``1e-4`` (no dot) as a string; numeric strings like that are read as numbers.
"""

from __future__ import annotations

import copy
import itertools
import math
import random
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from recsys.errors import ConfigError

__all__ = [
    "TUNER_CONTROLLED",
    "Distribution",
    "SearchSpace",
    "load_space",
    "parse_space",
    "set_dotted",
]

TUNABLE_SECTIONS = ("model", "train")
"""Config sections whose keys a space may sample."""

TUNER_CONTROLLED = frozenset(
    {
        "model.name",
        "train.epochs",
        "train.device",
        "train.num_threads",
        "train.progress",
        "train.valid_metric",
    }
)
"""Keys a space may not sample: the tuner sets them (they may still be ``fixed``)."""

CHECK_LIMIT = 128
"""At most this many combinations of candidate values are checked as whole trial configs
(:meth:`SearchSpace.check_configurations`): each builds the model (a few milliseconds for
the largest), before any data are read."""

_EXPONENT_FLOAT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")


def _number_or_text(value: Any) -> Any:
    """``"1e-4"`` -> ``1e-4``: undo PyYAML reading exponent floats without a dot as text."""
    if isinstance(value, str) and _EXPONENT_FLOAT.match(value.strip()):
        return float(value)
    return value


class _Dist(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def to_tune(self) -> Any:  # pragma: no cover - every subclass overrides it
        """The Ray Tune sampler (or grid) for this distribution."""
        raise NotImplementedError

    def candidates(self) -> list[Any]:  # pragma: no cover - every subclass overrides it
        """Values to validate against the config: every choice, or both ends of a range."""
        raise NotImplementedError

    @property
    def is_grid(self) -> bool:
        """Whether this is a grid axis (enumerated, not sampled)."""
        return False


class Choice(_Dist):
    """One of ``values``, uniformly at random."""

    type: Literal["choice"]
    values: list[Any] = Field(min_length=1)

    def to_tune(self) -> Any:
        from ray import tune

        return tune.choice(list(self.values))

    def candidates(self) -> list[Any]:
        return list(self.values)


class Grid(_Dist):
    """Every one of ``values`` (a grid axis)."""

    type: Literal["grid"]
    values: list[Any] = Field(min_length=1)

    def to_tune(self) -> Any:
        from ray import tune

        return tune.grid_search(list(self.values))

    def candidates(self) -> list[Any]:
        return list(self.values)

    @property
    def is_grid(self) -> bool:
        return True


class Uniform(_Dist):
    """A float uniform in ``[low, high]``, rounded to a multiple of ``q`` if given."""

    type: Literal["uniform"]
    low: float
    high: float
    q: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> Uniform:
        if not self.low < self.high:
            raise ValueError(f"low must be < high (got low={self.low}, high={self.high})")
        # Ray's rule for tune.quniform (ray.tune.search.sample.Float.quantized): each bound
        # divided by q must be (close to) a whole number, or Ray refuses the sampler
        if self.q is not None:
            off = [
                name
                for name, bound in (("low", self.low), ("high", self.high))
                if not math.isclose(bound / self.q, round(bound / self.q))
            ]
            if off:
                raise ValueError(
                    f"low and high must be multiples of q (got low={self.low}, "
                    f"high={self.high}, q={self.q}; {' and '.join(off)} "
                    f"{'is' if len(off) == 1 else 'are'} not)"
                )
        return self

    def to_tune(self) -> Any:
        from ray import tune

        if self.q is not None:
            return tune.quniform(self.low, self.high, self.q)
        return tune.uniform(self.low, self.high)

    def candidates(self) -> list[Any]:
        return [self.low, self.high]


class LogUniform(_Dist):
    """A float whose logarithm is uniform in ``[log low, log high]``."""

    type: Literal["loguniform"]
    low: float = Field(gt=0)
    high: float = Field(gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> LogUniform:
        if not self.low < self.high:
            raise ValueError(f"low must be < high (got low={self.low}, high={self.high})")
        return self

    def to_tune(self) -> Any:
        from ray import tune

        return tune.loguniform(self.low, self.high)

    def candidates(self) -> list[Any]:
        return [self.low, self.high]


class IntRange(_Dist):
    """An integer in ``[low, high]`` (both inclusive), a multiple of ``step`` from ``low``."""

    type: Literal["int"]
    low: int
    high: int
    step: int = Field(1, gt=0)
    log: bool = False
    """Sample uniformly in log space (``low`` must be >= 1; ``step`` must be 1)."""

    @model_validator(mode="after")
    def _valid(self) -> IntRange:
        if not self.low <= self.high:
            raise ValueError(f"low must be <= high (got low={self.low}, high={self.high})")
        if (self.high - self.low) % self.step:
            raise ValueError(
                f"high - low must be a multiple of step (got low={self.low}, high={self.high}, "
                f"step={self.step})"
            )
        if self.log and (self.low < 1 or self.step != 1):
            raise ValueError("log: true needs low >= 1 and step 1")
        return self

    def to_tune(self) -> Any:
        from ray import tune

        if self.log:
            return tune.lograndint(self.low, self.high + 1)
        if self.step == 1:
            # Ray's randint excludes its upper bound; ours is inclusive
            return tune.randint(self.low, self.high + 1)
        return tune.choice(list(range(self.low, self.high + 1, self.step)))

    def candidates(self) -> list[Any]:
        return [self.low, self.high]


class PowersOfTwo(_Dist):
    """One of ``low, 2 low, 4 low, ..., high`` (embedding sizes); a grid axis with ``grid``."""

    type: Literal["pow2"]
    low: int = Field(gt=0)
    high: int = Field(gt=0)
    grid: bool = False

    @model_validator(mode="after")
    def _powers(self) -> PowersOfTwo:
        for name, value in (("low", self.low), ("high", self.high)):
            if value & (value - 1):
                raise ValueError(f"{name} must be a power of two (got {value})")
        if not self.low <= self.high:
            raise ValueError(f"low must be <= high (got low={self.low}, high={self.high})")
        return self

    def values(self) -> list[int]:
        """The powers of two from ``low`` to ``high``."""
        n = int(math.log2(self.high // self.low))
        return [self.low * 2**i for i in range(n + 1)]

    def to_tune(self) -> Any:
        from ray import tune

        return tune.grid_search(self.values()) if self.grid else tune.choice(self.values())

    def candidates(self) -> list[Any]:
        return self.values()

    @property
    def is_grid(self) -> bool:
        return self.grid


Distribution = Annotated[
    Choice | Grid | Uniform | LogUniform | IntRange | PowersOfTwo, Field(discriminator="type")
]
_DISTRIBUTION = TypeAdapter(Distribution)
_TYPES = ("choice", "grid", "uniform", "loguniform", "int", "pow2")


@dataclass
class SearchSpace:
    """A parsed space file: sampled ``params`` and ``fixed`` constants, by dotted key."""

    params: dict[str, Any]
    """Dotted key -> distribution (:data:`Distribution`)."""
    fixed: dict[str, Any] = field(default_factory=dict)
    """Dotted key -> constant, applied to the base config before any trial."""
    points: list[dict[str, Any]] = field(default_factory=list)
    """Configurations (dotted key -> value, every ``params`` key) to run first, in order."""
    source: str = "<space>"
    """Where the space came from (a file path), for messages."""

    def to_tune(self) -> dict[str, Any]:
        """Ray Tune's ``param_space``: flat, one sampler per dotted key."""
        return {key: dist.to_tune() for key, dist in self.params.items()}

    @property
    def grid_keys(self) -> list[str]:
        """Keys that are grid axes."""
        return [key for key, dist in self.params.items() if dist.is_grid]

    def grid_size(self) -> int:
        """Configurations the grid axes make (1 without grid axes)."""
        size = 1
        for key in self.grid_keys:
            size *= len(self.params[key].candidates())
        return size

    def check_configurations(self, limit: int = CHECK_LIMIT, seed: int = 0) -> list[dict[str, Any]]:
        """Configurations (dotted key -> value, every ``params`` key) that stand for the
        trials, for checks that judge a trial's config as a whole (a model's own check of its
        training settings: DNIS needs ``train.epochs`` to cover ``model.warm_start_epochs`` +
        ``model.search_epochs``).

        They are every combination of the keys' candidate values (:meth:`candidates` of each
        distribution: every choice, grid and ``pow2`` value, both ends of a ``uniform``,
        ``loguniform`` or ``int`` range) or, when there are more than ``limit`` combinations,
        ``limit`` of them drawn at random with ``seed``; then every point. A range is judged
        by its ends only, so a check that refuses a value inside a range, and the unchecked
        combinations of a large space, are left to the trial (which ends ``refused``).
        """
        keys = list(self.params)
        values = [_unique(self.params[key].candidates()) for key in keys]
        size = math.prod(len(v) for v in values)
        if size <= limit:
            combos = list(itertools.product(*values))
        else:
            rng = random.Random(seed)
            drawn: dict[tuple[int, ...], None] = {}
            while len(drawn) < limit:
                drawn[tuple(rng.randrange(len(v)) for v in values)] = None
            combos = [tuple(v[i] for v, i in zip(values, index, strict=True)) for index in drawn]
        configurations = [dict(zip(keys, combo, strict=True)) for combo in combos]
        return configurations + [dict(point) for point in self.points]

    def without(self, keys: Iterable[str]) -> tuple[SearchSpace, list[str]]:
        """The space with ``keys`` (and every key under them) neither fixed nor sampled.

        For keys set on the command line (``--set``): a constant there beats both a
        ``fixed`` value and a distribution. Points lose those keys too, and points that
        become equal are run once.

        Returns:
            The new space and the ``params`` keys that were dropped.

        Raises:
            ConfigError: every ``params`` key was dropped, so nothing is left to tune.
        """
        keys = list(keys)

        def covered(key: str) -> bool:
            return any(key == k or key.startswith(k + ".") for k in keys)

        dropped = [key for key in self.params if covered(key)]
        params = {key: dist for key, dist in self.params.items() if not covered(key)}
        if dropped and not params:
            raise ConfigError(
                f"{self.source}: --set gives every sampled key ({', '.join(dropped)}) a "
                "constant; there is nothing left to tune"
            )
        points: list[dict[str, Any]] = []
        for point in self.points:
            kept = {key: value for key, value in point.items() if not covered(key)}
            if kept not in points:
                points.append(kept)
        space = SearchSpace(
            params=params,
            fixed={key: value for key, value in self.fixed.items() if not covered(key)},
            points=points,
            source=self.source,
        )
        return space, dropped

    def as_dict(self) -> dict[str, Any]:
        """The space as plain data (what a space file holds)."""
        params = {key: dist.model_dump() for key, dist in self.params.items()}
        out: dict[str, Any] = {"fixed": dict(self.fixed), "params": params}
        if self.points:
            out["points"] = [dict(point) for point in self.points]
        return out


def set_dotted(values: dict[str, Any], key: str, value: Any) -> None:
    """Set ``a.b.c`` in a nested dict, creating sections; a non-mapping on the way is an error."""
    parts = key.split(".")
    node = values
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            raise ConfigError(f"{key}: {part!r} is not a section")
        node = child
    node[parts[-1]] = value


def load_space(path: Path, base: dict[str, Any] | None = None) -> SearchSpace:
    """Read and validate the space file ``path``; see :func:`parse_space` for ``base``."""
    from recsys.config import load_yaml, yaml_problem

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"search-space file {path} does not exist")
    try:
        # the reader of config files, so a value means the same in both (1e-4 a number,
        # 010 ten, yes text), and a key given twice is an error
        raw = load_yaml(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"search-space file {path} is not valid YAML: {yaml_problem(exc)}"
        ) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"search-space file {path} is not UTF-8 text ({exc.reason})") from None
    return parse_space(raw, base, source=str(path))


def parse_space(
    raw: Any, base: dict[str, Any] | None = None, source: str = "<space>"
) -> SearchSpace:
    """Validate a space given as plain data.

    With ``base`` (the run config the trials start from, as a dict) every candidate value of
    every key, and the ``fixed`` values, are checked against the full run config, so a value
    the model rejects fails here, naming the file and the key.
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: a search space must be a mapping with a 'params' section")
    unknown = sorted(set(raw) - {"params", "fixed", "points"})
    if unknown:
        raise ConfigError(
            f"{source}: unknown top-level key(s) {', '.join(map(repr, unknown))} "
            "(known: fixed, params, points)"
        )
    fixed = _section(raw, "fixed", source)
    params_raw = _section(raw, "params", source)
    if not params_raw:
        raise ConfigError(
            f"{source}: 'params' is empty; there is nothing to tune (a model without "
            "hyper-parameters, like pop, needs no tuning: train it with `recsys train`)"
        )
    params = {}
    for key, spec in params_raw.items():
        params[key] = _parse_distribution(str(key), spec, source)
    fixed = {str(k): _plain(v) for k, v in fixed.items()}
    for key in fixed:
        _check_key_shape(key, source, "fixed")
    for key in set(fixed) & set(params):
        raise ConfigError(f"{source}: key {key} is both in 'fixed' and in 'params'")
    points = _parse_points(raw.get("points"), params, source)
    space = SearchSpace(params=params, fixed=fixed, points=points, source=source)
    if base is not None:
        check_against(space, base)
    return space


def _parse_points(raw: Any, params: dict[str, Any], source: str) -> list[dict[str, Any]]:
    """``points``: a list of mappings, each giving a value to exactly the ``params`` keys."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ConfigError(f"{source}: 'points' must be a list of configurations")
    grid = [key for key, dist in params.items() if dist.is_grid]
    if raw and grid:
        raise ConfigError(
            f"{source}: 'points' cannot be combined with grid axes ({', '.join(grid)}); "
            "list every configuration as a point instead"
        )
    points = []
    for index, point in enumerate(raw):
        if not isinstance(point, dict):
            raise ConfigError(f"{source}: points[{index}] must be a mapping of dotted keys")
        point = {str(k): _plain(v) for k, v in point.items()}
        unknown = sorted(set(point) - set(params))
        missing = sorted(set(params) - set(point))
        if unknown:
            raise ConfigError(
                f"{source}: points[{index}]: key(s) {', '.join(unknown)} are not in 'params'"
            )
        if missing:
            raise ConfigError(f"{source}: points[{index}]: no value for {', '.join(missing)}")
        points.append(point)
    return points


def _section(raw: dict[str, Any], name: str, source: str) -> dict[str, Any]:
    value = raw.get(name) or {}
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: '{name}' must be a mapping of dotted keys")
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return _number_or_text(value)


def _check_key_shape(key: str, source: str, section: str) -> None:
    parts = key.split(".")
    if len(parts) < 2 or not all(parts):
        raise ConfigError(
            f"{source}: {section} key {key!r} must be a dotted config key such as "
            "model.embedding_size or train.learning_rate"
        )


def _parse_distribution(key: str, spec: Any, source: str) -> Any:
    _check_key_shape(key, source, "params")
    section = key.split(".", 1)[0]
    if section not in TUNABLE_SECTIONS:
        raise ConfigError(
            f"{source}: key {key}: only model.* and train.* keys can be tuned (data and split "
            "are loaded once for all trials; set them with --set or in 'fixed')"
        )
    if key in TUNER_CONTROLLED:
        raise ConfigError(
            f"{source}: key {key} is set by the tuner and cannot be sampled; put a constant in "
            "'fixed' or use --set"
        )
    if not isinstance(spec, dict):
        raise ConfigError(
            f"{source}: key {key}: expected a mapping with a 'type' "
            f"({', '.join(_TYPES)}), got {spec!r}"
        )
    if "type" not in spec:
        raise ConfigError(f"{source}: key {key}: missing 'type' (one of {', '.join(_TYPES)})")
    try:
        dist = _DISTRIBUTION.validate_python(_plain(spec))
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = [str(p) for p in err["loc"][1:]]  # drop the union tag
            where = ".".join(loc)
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "union_tag_invalid":
                msg = f"unknown type {spec.get('type')!r} (known: {', '.join(_TYPES)})"
                where = ""
            elif err["type"] == "extra_forbidden":
                msg = f"unknown field for type {spec.get('type')!r}"
            problems.append(f"{where}: {msg}" if where else msg)
        raise ConfigError(f"{source}: key {key}: {'; '.join(problems)}") from None
    try:
        # Ray's own checks of the sampler, now rather than once the experiment folder exists
        dist.to_tune()
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{source}: key {key}: Ray Tune refuses it: {exc}") from None
    return dist


def check_against(space: SearchSpace, base: dict[str, Any]) -> None:
    """Check that ``fixed`` and every candidate value of ``params`` make a valid run config."""
    from recsys.config import RunConfig, validate

    with_fixed = copy.deepcopy(base)
    try:
        for key, value in space.fixed.items():
            set_dotted(with_fixed, key, value)
        validate(RunConfig, with_fixed)
    except ConfigError as exc:
        keys = ", ".join(space.fixed) or "(none)"
        raise ConfigError(f"{space.source}: fixed values ({keys}) are invalid: {exc}") from None
    model_params = _model_fields(with_fixed)
    for key, dist in space.params.items():
        section, name = key.split(".", 1)
        # a nested key (model.base_params.embedding_size) is checked by its hyper-parameter
        top = name.split(".", 1)[0]
        if section == "model" and model_params is not None and top not in model_params:
            known = ", ".join(sorted(model_params)) or "none"
            raise ConfigError(
                f"{space.source}: key {key}: model {with_fixed['model']['name']!r} has no "
                f"hyper-parameter {top!r} (known: {known})"
            )
        for value in _unique(dist.candidates()):
            trial = copy.deepcopy(with_fixed)
            try:
                set_dotted(trial, key, value)
                if section == "model":
                    _validate_model(trial["model"])
                validate(RunConfig, trial)
            except ConfigError as exc:
                raise ConfigError(f"{space.source}: key {key}, value {value!r}: {exc}") from None
    for index, point in enumerate(space.points):
        trial = copy.deepcopy(with_fixed)
        try:
            for key, value in point.items():
                set_dotted(trial, key, value)
            validate(RunConfig, trial)
        except ConfigError as exc:
            raise ConfigError(f"{space.source}: points[{index}]: {exc}") from None


def _validate_model(values: dict[str, Any]) -> None:
    """Validate the model section alone, for errors that name just the model key."""
    from recsys.models.base import build_config
    from recsys.models.registry import get_model_class

    params = {k: v for k, v in values.items() if k != "name"}
    build_config(get_model_class(str(values["name"])).config_class, params)


def _model_fields(values: dict[str, Any]) -> set[str] | None:
    from recsys.models.registry import get_model_class

    name = (values.get("model") or {}).get("name")
    if not name:
        return None
    return set(get_model_class(str(name)).config_class.model_fields)


def _unique(values: Iterable[Any]) -> list[Any]:
    out: list[Any] = []
    for value in values:
        if value not in out:
            out.append(value)
    return out
