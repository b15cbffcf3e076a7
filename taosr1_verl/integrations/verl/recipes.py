"""Compose and validate the verl recipes exactly as verl's entry points would.

A recipe is a Hydra config that extends verl's own (``ppo_trainer`` for GRPO, ``sft_trainer_engine`` for
SFT) and ends with a device overlay (``overlays/<kind>/{gpu,cpu}.yaml``). Ours ship in the package
(:mod:`taosr1_verl.recipes`); a user's own YAML file that extends them (``hydra.searchpath`` listing
``pkg://taosr1_verl.recipes``, ``defaults: [grpo, _self_]``) is run and validated the same way. GPU runs
cannot happen on CI, so this module is how a broken recipe fails there:

- :func:`compose_recipe` composes it with Hydra, the ``pkg://verl.trainer.config`` search path and the
  chosen overlay (what ``--config-path/--config-name`` does in ``main_ppo`` / ``sft_trainer``);
- :func:`validate_recipe` runs verl's own checks (``validate_config`` for PPO, the dataclass conversions
  the SFT trainer makes), flags keys that verl does not know (a YAML file merged into verl's config may
  add keys silently, so a typo would otherwise be ignored), resolves the reward function and the custom
  sampler, and checks the reward options against :class:`taosr1_verl.rewards.RewardConfig`.

Example::

    >>> from taosr1_verl.integrations.verl.recipes import compose_recipe, validate_recipe
    >>> cfg = compose_recipe("grpo", ["actor_rollout_ref.model.path=/m", "data.train_files=/t",
    ...                               "data.val_files=/v"], device="cpu")   # doctest: +SKIP
    >>> validate_recipe("grpo", cfg)                                       # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from taosr1_verl.config_types import COUNT, FRACTION, NON_NEGATIVE, POSITIVE, UNIT, Bound, mismatch
from taosr1_verl.recipes import CONFIG_PATH, recipes_dir

logger = logging.getLogger(__name__)

Device = Literal["cpu", "gpu"]
DEVICES: tuple[str, ...] = get_args(Device)
"""The device overlays a recipe runs with (``overlays/<kind>/<device>.yaml``)."""


@dataclass(frozen=True)
class RecipeSpec:
    """How one recipe is run."""

    name: str
    """Config name (``<name>.yaml``)."""
    kind: Literal["ppo", "sft"]
    """Overlay group (``overlays/<kind>``) and validation path."""
    entry: str
    """verl module run with ``python -m`` (SFT under torchrun)."""
    base: str
    """verl's config the recipe extends."""
    required: tuple[str, ...] = ()
    """Keys the recipe leaves null that every run must set (``???`` cannot be used: OmegaConf keeps
    verl's value when merging a missing value over it)."""
    config_dir: str | None = None
    """Directory of a user's own recipe file; ``None`` for the recipes shipped in :mod:`taosr1_verl.recipes`."""

    @property
    def where(self) -> str:
        """The recipe file, for messages."""
        return str(Path(self.config_dir) / f"{self.name}.yaml") if self.config_dir else f"{CONFIG_PATH}/{self.name}.yaml"

    def config_args(self) -> list[str]:
        """Hydra's command-line arguments that select this recipe in verl's entry point."""
        if self.config_dir is None:
            return [f"--config-path={CONFIG_PATH}", f"--config-name={self.name}"]
        # An extra search directory: verl's own config dir stays primary, so ppo_trainer is found as well.
        return [f"--config-dir={self.config_dir}", f"--config-name={self.name}"]


RECIPES: dict[str, RecipeSpec] = {
    "sft": RecipeSpec("sft", "sft", "verl.trainer.sft_trainer", "sft_trainer_engine",
                      required=("model.path", "data.train_files")),
    "grpo": RecipeSpec("grpo", "ppo", "verl.trainer.main_ppo", "ppo_trainer",
                       required=("actor_rollout_ref.model.path", "data.train_files", "data.val_files")),
}
"""The verl recipes (stage 2, DPO, runs on TRL and has its own runner)."""

VERL_CONFIG_PATH = "pkg://verl.trainer.config"
"""Where verl's own configs (``ppo_trainer``, ``sft_trainer_engine`` and their groups) are found."""

_KIND_OF_DEFAULT = {"grpo": "grpo", "ppo_trainer": "grpo", "sft": "sft", "sft_trainer_engine": "sft"}
"""What a user's recipe extends (an entry of its ``defaults`` list) -> the recipe it runs like."""

FREE_FORM_PREFIXES: tuple[str, ...] = (
    # ray.init(**ray_kwargs.ray_init): any ray.init keyword.
    "ray_kwargs.ray_init.",
    # Passed to taosr1_verl.rewards.compute_score; checked against RewardConfig below.
    "reward.custom_reward_function.reward_kwargs.",
    # Read by taosr1_verl's SFT dataset (data.custom_cls); checked below.
    "data.label_weight",
)
"""Key prefixes where a recipe may add keys verl's YAML does not list (besides empty dicts in verl's
config, e.g. ``override_config: {}`` and ``sampler_kwargs: {}``, and fields of the node's dataclass)."""


class RecipeError(ValueError):
    """A recipe that verl would reject, or that names things that do not exist."""


def get_recipe(name: str) -> RecipeSpec:
    """The :class:`RecipeSpec` of ``name``: ``sft`` or ``grpo`` (shipped), or the path of a user's recipe YAML
    that extends one of them (or verl's ``ppo_trainer`` / ``sft_trainer_engine``) with
    ``pkg://taosr1_verl.recipes`` in its ``hydra.searchpath``."""
    if name in RECIPES:
        return RECIPES[name]
    if not name.endswith((".yaml", ".yml")):
        raise RecipeError(f"unknown recipe {name!r}: use one of {sorted(RECIPES)} or the path of a recipe YAML file")
    return _user_recipe(Path(name))


def _user_recipe(path: Path) -> RecipeSpec:
    import yaml

    if not path.is_file():
        raise RecipeError(f"{path}: recipe file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise RecipeError(f"{path}: not a readable YAML file: {e}") from None
    defaults = data.get("defaults") if isinstance(data, dict) else None
    names = [d for d in defaults or [] if isinstance(d, str)]
    kinds = {_KIND_OF_DEFAULT[d] for d in names if d in _KIND_OF_DEFAULT}
    if len(kinds) != 1:
        raise RecipeError(f"{path}: its `defaults` list must extend exactly one of {sorted(_KIND_OF_DEFAULT)} "
                          f"(found {names})")
    searchpath = ((data.get("hydra") or {}).get("searchpath") or []) if isinstance(data.get("hydra"), dict) else []
    needed = [CONFIG_PATH, VERL_CONFIG_PATH]
    if not all(p in searchpath for p in needed):
        raise RecipeError(f"{path}: hydra.searchpath must list {needed} (our recipes and overlays, verl's configs); "
                          f"it lists {searchpath}")
    shipped = RECIPES[kinds.pop()]
    return dataclasses.replace(shipped, name=path.stem, config_dir=str(path.resolve().parent))


def overlay_override(spec: RecipeSpec, device: Device) -> str:
    """The Hydra override that selects the device overlay, e.g. ``overlays/ppo=cpu``."""
    if device not in DEVICES:
        raise RecipeError(f"device must be 'cpu' or 'gpu', got {device!r}")
    return f"overlays/{spec.kind}={device}"


def compose_config(config_dir: str, config_name: str, overrides: Sequence[str]):
    """Hydra's composition of ``config_name`` in ``config_dir`` with ``overrides`` (a fresh Hydra each time)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=config_dir, version_base=None):
        return compose(config_name=config_name, overrides=list(overrides))


def compose_recipe(name: str, overrides: Iterable[str] = (), device: Device = "gpu"):
    """Compose recipe ``name`` (see :func:`get_recipe`) with the ``device`` overlay and ``overrides`` (an OmegaConf DictConfig).

    Raises :class:`RecipeError` with Hydra's message when a key or a config group does not exist.
    """
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    spec = get_recipe(name)
    all_overrides = [overlay_override(spec, device), *overrides]
    try:
        return compose_config(spec.config_dir or str(recipes_dir()), spec.name, all_overrides)
    except (HydraException, OmegaConfBaseException) as e:
        raise RecipeError(f"{spec.where} (device {device}): {e}") from e


def compose_base(name: str):
    """verl's own config that recipe ``name`` extends, composed with no changes."""
    import verl.trainer.config as verl_config

    spec = get_recipe(name)
    return compose_config(str(importlib.resources.files(verl_config)), spec.base, [])


def _leaf_paths(node: Any, prefix: str = "") -> Iterable[str]:
    from omegaconf import DictConfig

    if isinstance(node, DictConfig):
        keys = list(node.keys())
        if not keys and prefix:
            yield prefix
        for k in keys:
            yield from _leaf_paths(node._get_node(k), f"{prefix}.{k}" if prefix else str(k))
    else:
        yield prefix


def _dataclass_fields(target: str) -> set[str] | None:
    module, _, attr = target.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError):
        return None
    return {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else None


def unknown_keys(cfg: Any, base: Any) -> list[str]:
    """Keys of ``cfg`` that verl's ``base`` config does not define and that nothing would consume.

    A key is known if ``base`` has it, if it lies under a free-form mapping (an empty dict in ``base`` or
    :data:`FREE_FORM_PREFIXES`), or if it is (or lies under) a field of the dataclass (``_target_``) of its nearest node in ``base``.
    """
    from omegaconf import DictConfig, OmegaConf

    unknown = []
    for path in _leaf_paths(cfg):
        if OmegaConf.select(base, path, default="__missing__", throw_on_missing=False) != "__missing__":
            continue
        if any(path.startswith(p) for p in FREE_FORM_PREFIXES):
            continue
        parts = path.split(".")
        ok = False
        for i in range(len(parts) - 1, 0, -1):
            parent = ".".join(parts[:i])
            base_parent = OmegaConf.select(base, parent, default=None, throw_on_missing=False)
            if isinstance(base_parent, DictConfig):
                if len(base_parent) == 0:
                    ok = True  # a free-form mapping in verl's config (override_config, sampler_kwargs, ...)
                elif "_target_" in base_parent:
                    # A field of the node's dataclass that verl's YAML omits (its value is the field's business).
                    fields = _dataclass_fields(str(base_parent["_target_"]))
                    ok = fields is not None and parts[i] in fields
                break
        if not ok:
            unknown.append(path)
    return unknown


def _check_reward(cfg: Any, where: str) -> None:
    from omegaconf import OmegaConf

    from taosr1_verl.rewards import RewardConfig

    rf = cfg.reward.get("custom_reward_function") or {}
    if not rf.get("path"):
        return
    from verl.utils.import_utils import load_extern_object

    try:
        fn = load_extern_object(module_path=rf.path, object_name=rf.name)
    except (ImportError, AttributeError, FileNotFoundError, RuntimeError) as e:
        raise RecipeError(f"{where}: reward.custom_reward_function {rf.path}:{rf.name} does not load: {e}") from e
    if not callable(fn):
        raise RecipeError(f"{where}: reward.custom_reward_function {rf.path}:{rf.name} is not callable")
    kwargs = OmegaConf.to_container(rf.reward_kwargs, resolve=True) if rf.get("reward_kwargs") else {}
    if getattr(fn, "__module__", "").startswith("taosr1_verl"):
        names = {f.name for f in dataclasses.fields(RewardConfig)}
        bad = sorted(set(kwargs) - names)
        if bad:
            raise RecipeError(f"{where}: unknown reward_kwargs {bad}; RewardConfig takes {sorted(names)}")
        try:
            RewardConfig(**kwargs)
        except (TypeError, ValueError) as e:
            raise RecipeError(f"{where}: bad reward_kwargs: {e}") from e


def _check_sampler(cfg: Any, where: str) -> None:
    mode = cfg.trainer.get("v1", {}).get("trainer_mode", "sync")
    from taosr1_verl.integrations.verl.environment import TRAINER_MODULE

    importlib.import_module(TRAINER_MODULE)  # what VERL_USE_EXTERNAL_MODULES does in the job
    from verl.trainer.ppo.v1 import get_trainer_cls

    try:
        get_trainer_cls(mode)
    except (KeyError, ValueError, AssertionError) as e:
        raise RecipeError(f"{where}: trainer.v1.trainer_mode {mode!r} is not a registered trainer: {e}") from e
    sampler = cfg.trainer.get("v1", {}).get("sampler", {}).get("custom_sampler", {})
    if not sampler or not sampler.get("path"):
        return
    from verl.utils.import_utils import load_extern_object

    try:
        load_extern_object(module_path=sampler.path, object_name=sampler.name)
    except (ImportError, AttributeError, FileNotFoundError, RuntimeError) as e:
        raise RecipeError(f"{where}: trainer.v1.sampler.custom_sampler {sampler.path}:{sampler.name}: {e}") from e


def _check_sft_dataset(cfg: Any, where: str) -> None:
    from taosr1_verl.integrations.verl.sft_dataset import (
        LABEL_WEIGHT_KEY,
        LabelWeightedSFTDataset,
        check_label_weight,
    )

    custom = cfg.data.get("custom_cls") or {}
    cls = None
    if custom.get("path"):
        from verl.utils.import_utils import load_extern_object

        try:
            cls = load_extern_object(module_path=custom.path, object_name=custom.name)
        except (ImportError, AttributeError, FileNotFoundError, RuntimeError) as e:
            raise RecipeError(f"{where}: data.custom_cls {custom.path}:{custom.name} does not load: {e}") from e
    weight = cfg.data.get(LABEL_WEIGHT_KEY)
    if weight is None:
        return
    try:
        weight = check_label_weight(weight, cfg.data.get("pad_mode"))
    except ValueError as e:
        raise RecipeError(f"{where}: {e}") from e
    if weight != 1 and not (isinstance(cls, type) and issubclass(cls, LabelWeightedSFTDataset)):
        raise RecipeError(f"{where}: data.{LABEL_WEIGHT_KEY}={weight} is read only by LabelWeightedSFTDataset, "
                          f"but data.custom_cls is {custom.get('path')}:{custom.get('name')}")


# ---- values: types, ranges, legacy keys, paths ---------------------------------------------------------
_MAYBE_COUNT = dataclasses.replace(COUNT, optional=True)
_OPTIM = {"lr": POSITIVE, "weight_decay": NON_NEGATIVE, "lr_warmup_steps_ratio": UNIT, "clip_grad": POSITIVE,
          "min_lr_ratio": Bound(float, 0, 1, optional=True)}

BOUNDS: dict[str, dict[str, Bound]] = {
    "ppo": {
        "data.train_batch_size": COUNT, "data.val_batch_size": _MAYBE_COUNT, "data.gen_batch_size": _MAYBE_COUNT,
        "data.max_prompt_length": COUNT, "data.max_response_length": COUNT,
        **{f"actor_rollout_ref.actor.optim.{k}": b for k, b in _OPTIM.items()},
        "actor_rollout_ref.actor.ppo_mini_batch_size": COUNT,
        "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu": _MAYBE_COUNT,
        "actor_rollout_ref.actor.ppo_epochs": COUNT, "actor_rollout_ref.actor.clip_ratio": POSITIVE,
        "actor_rollout_ref.actor.kl_loss_coef": NON_NEGATIVE, "actor_rollout_ref.actor.grad_clip": POSITIVE,
        "actor_rollout_ref.rollout.n": COUNT, "actor_rollout_ref.rollout.temperature": NON_NEGATIVE,
        "actor_rollout_ref.rollout.top_p": FRACTION, "actor_rollout_ref.rollout.prompt_length": COUNT,
        "actor_rollout_ref.rollout.response_length": COUNT,
        "actor_rollout_ref.rollout.gpu_memory_utilization": FRACTION,
        "actor_rollout_ref.rollout.tensor_model_parallel_size": COUNT,
        "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu": _MAYBE_COUNT,
        "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu": _MAYBE_COUNT,
        "trainer.total_epochs": COUNT, "trainer.total_training_steps": _MAYBE_COUNT, "trainer.nnodes": COUNT,
        "trainer.n_gpus_per_node": COUNT, "algorithm.gamma": UNIT, "algorithm.lam": UNIT,
        "algorithm.kl_ctrl.kl_coef": NON_NEGATIVE,
    },
    "sft": {
        "data.train_batch_size": COUNT, "data.micro_batch_size_per_gpu": COUNT, "data.max_length": COUNT,
        "data.max_token_len_per_gpu": COUNT, **{f"optim.{k}": b for k, b in _OPTIM.items()},
        "trainer.total_epochs": COUNT, "trainer.total_training_steps": _MAYBE_COUNT, "trainer.nnodes": COUNT,
        "trainer.n_gpus_per_node": COUNT,
    },
}
"""Ranges of the keys verl reads as numbers (it checks few of them: ``lr=fast`` or ``rollout.n=-3`` reach the
trainer, and ``data.train_batch_size=abc`` fails inside a format string that names no key)."""

LEGACY_KEYS: dict[str, str] = {
    "custom_reward_function": "reward.custom_reward_function",
    "reward_model.num_workers": "reward.num_workers",
    "reward_model.reward_manager": "reward.reward_manager.name",
    "reward_model.model.path": "reward.reward_model.model_path",
    "reward_model.rollout": "reward.reward_model.rollout",
    "reward_model": "reward.reward_model",
    "sandbox_fusion": "reward.sandbox_fusion",
}
"""Top-level PPO keys verl 0.9.1 still accepts but ``main_ppo`` ignores (only the fully-async entry point
migrates them), longest prefix first -> where the setting lives now."""

REMOTE_SCHEMES = ("hdfs://", "s3://", "gs://", "gcs://", "abfs://", "oss://", "http://", "https://")
"""Paths with these prefixes are not checked locally."""


def _field_types(target: str) -> dict[str, Any]:
    import typing

    module, _, attr = target.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), attr)
        return typing.get_type_hints(cls) if dataclasses.is_dataclass(cls) else {}
    except Exception:  # an unimportable target or an unresolvable annotation: nothing to check against
        return {}


def _typed_fields(node: Any, prefix: str = "") -> Iterable[tuple[str, str]]:
    """``(key, expected)`` for each scalar of ``node`` whose value does not fit its verl dataclass field."""
    if not isinstance(node, dict):
        return
    hints = _field_types(str(node["_target_"])) if isinstance(node.get("_target_"), str) else {}
    for k, v in node.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict):
            yield from _typed_fields(v, key)
        elif k in hints:
            expected = mismatch(hints[k], v)  # null is fine: verl's defaults put it in int fields too
            if expected:
                yield key, expected


def check_values(kind: str, cfg: Any, where: str) -> None:
    """Types of every scalar that verl's config dataclasses declare, and :data:`BOUNDS`. Raises
    :class:`RecipeError` naming each bad key with its value and what it must be."""
    from omegaconf import OmegaConf

    def interpolated(key: str) -> bool:  # reported at the key it copies, once
        parent, _, leaf = key.rpartition(".")
        return OmegaConf.is_interpolation(OmegaConf.select(cfg, parent) if parent else cfg, leaf)

    values = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    bad = [f"{k}={OmegaConf.select(cfg, k)!r} (expected {e})" for k, e in _typed_fields(values)
           if not interpolated(k)]
    for key, bound in BOUNDS[kind].items():
        value = OmegaConf.select(cfg, key, default="__absent__", throw_on_missing=False)
        if value != "__absent__" and not bound.accepts(value) and not any(b.startswith(f"{key}=") for b in bad):
            bad.append(f"{key}={value!r} (expected {bound.describe()})")
    if kind == "ppo":
        n = OmegaConf.select(cfg, "actor_rollout_ref.rollout.n", default=None)
        if cfg.algorithm.get("adv_estimator") == "grpo" and isinstance(n, int) and n == 1:
            bad.append("actor_rollout_ref.rollout.n=1 (expected >= 2: GRPO compares the responses of a group)")
    if bad:
        raise RecipeError(f"{where}: bad value(s): {'; '.join(bad)}")


def check_legacy_keys(cfg: Any, where: str) -> None:
    """Reject settings under the top-level keys ``main_ppo`` ignores (:data:`LEGACY_KEYS`), naming the new key."""
    from omegaconf import DictConfig, OmegaConf

    found = []
    for path in _leaf_paths(cfg):
        if path.split(".", 1)[0] not in ("custom_reward_function", "reward_model", "sandbox_fusion"):
            continue
        value = OmegaConf.select(cfg, path, default=None, throw_on_missing=False)
        if value is None or (isinstance(value, DictConfig) and len(value) == 0):
            continue
        old = next(k for k in LEGACY_KEYS if path == k or path.startswith(k + "."))
        found.append(f"{path} -> {LEGACY_KEYS[old]}{path[len(old):]}")
    if found:
        raise RecipeError(f"{where}: verl's main_ppo ignores these legacy keys; set the new ones instead: "
                          f"{'; '.join(found)}")


PATH_KEYS: dict[str, tuple[tuple[str, str], ...]] = {
    "ppo": (("actor_rollout_ref.model.path", "model"), ("data.train_files", "file"), ("data.val_files", "file"),
            ("data.tokenizer", "tokenizer")),
    "sft": (("model.path", "model"), ("model.tokenizer_path", "tokenizer"), ("data.train_files", "file"),
            ("data.val_files", "file")),
}
"""Keys naming local inputs, checked by :func:`check_local_paths` (what kind of path each must be)."""


def check_local_paths(kind: str, cfg: Any, where: str) -> None:
    """Every model directory and data file the recipe names exists here (a run on this machine; a cluster
    job's paths are the cluster's). Remote URIs (:data:`REMOTE_SCHEMES`) are skipped."""
    from omegaconf import ListConfig, OmegaConf

    bad = []
    for key, what in PATH_KEYS[kind]:
        value = OmegaConf.select(cfg, key, default=None, throw_on_missing=False)
        for text in (list(value) if isinstance(value, ListConfig | list) else [value]):
            if not isinstance(text, str) or not text or text.startswith(REMOTE_SCHEMES):
                continue
            path = Path(text).expanduser()
            if what == "file" and not path.is_file():
                bad.append(f"{key}={text} ({'a directory, not a file' if path.is_dir() else 'no such file'})")
            elif what != "file" and not path.is_dir():
                bad.append(f"{key}={text} ({'a file, not a' if path.exists() else 'no such'} {what} directory)")
            elif what == "model" and not (path / "config.json").is_file():
                bad.append(f"{key}={text} (not a model directory: no config.json)")
    if bad:
        raise RecipeError(f"{where}: {'; '.join(bad)}")


def validate_recipe(name: str, cfg: Any, check_model: bool = True, check_paths: bool = False) -> None:
    """Run verl's validation of a composed recipe, plus the checks verl skips. Raises :class:`RecipeError`.

    Besides verl's own checks: required keys, keys verl does not know, types and ranges of the values
    (:func:`check_values`), legacy keys ``main_ppo`` ignores (:func:`check_legacy_keys`), the reward function,
    its options and the sampler/trainer plug-ins.

    ``check_model``: also build the SFT trainer's model config, which opens ``model.path`` (needs a real
    checkpoint directory). ``check_paths``: the model directories and data files exist on this machine
    (:func:`check_local_paths`; on for a local ``taosr1 recipe run``, off for ``--submit`` where paths are the
    cluster's).
    """
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    spec = get_recipe(name)
    where = spec.where
    base = compose_base(name)
    # `???` that verl itself leaves unset (e.g. the unused reward model's rollout name) are fine.
    missing = sorted(OmegaConf.missing_keys(cfg) - OmegaConf.missing_keys(base))
    missing += [k for k in spec.required if OmegaConf.select(cfg, k, default=None) in (None, "")]
    if missing:
        raise RecipeError(f"{where}: required values not set: {missing}")
    extra = unknown_keys(cfg, base)
    if extra:
        raise RecipeError(f"{where}: keys verl does not know (typo?): {extra}")
    if spec.kind == "ppo":
        check_legacy_keys(cfg, where)
    check_values(spec.kind, cfg, where)
    if check_paths:
        check_local_paths(spec.kind, cfg, where)
    cfg = cfg.copy()
    try:
        if spec.kind == "ppo":
            from verl.trainer.main_ppo import need_critic, need_reference_policy
            from verl.utils.config import validate_config

            validate_config(config=cfg, use_reference_policy=need_reference_policy(cfg), use_critic=need_critic(cfg))
            _check_reward(cfg, where)
            _check_sampler(cfg, where)
        else:
            from verl.utils.config import omega_conf_to_dataclass

            sections = ["engine", "optim", "checkpoint", "profiler"] + (["model"] if check_model else [])
            for section in sections:
                omega_conf_to_dataclass(cfg[section])
            _check_sft_dataset(cfg, where)
    except RecipeError:
        raise
    except (AssertionError, ValueError, TypeError, KeyError, AttributeError, OmegaConfBaseException,
            HydraException) as e:  # verl's dataclass checks surface as Hydra InstantiationException
        raise RecipeError(f"{where}: verl rejects the config: {type(e).__name__}: {e}") from e
