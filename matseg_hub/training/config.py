"""Training configuration: one dataclass, loaded from YAML, every field overridable on the command line.

Example::

    cfg = load_config("train/configs/tiny-cpu.yaml", ["--max_steps", "10", "--learning_rate=3e-4"])

Overrides are ``--key value`` or ``--key=value`` for any field of :class:`TrainConfig` (dashes and underscores
are the same); the value is read as YAML (``--hidden_sizes "[8, 16, 32, 64]"``, ``--push_to_hub null``,
``--data_sources '[{type: scenes2d, weight: 1}]'``) and checked against the field's type. A bare ``--flag`` sets a
boolean field to true.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

from ..errors import MatSegInputError


#: evaluation groups: held-out generated scenes (model selection) and the benchmark (test numbers)
METRIC_GROUPS = ("scenes", "benchmark")


def _default_sources() -> List[Dict[str, Any]]:
    return [{"type": "scenes2d", "weight": 1.0}]


@dataclass
class TrainConfig:
    """Every setting of ``train/train.py``. Defaults are the paper's recipe where it has one."""

    # --- run
    output_dir: str = "runs/matseg"
    seed: int = 0
    max_steps: int = 100000
    max_train_minutes: Optional[float] = None  # stop (evaluate, checkpoint, save) after this much wall time
    #                                            (checked at logging steps, where the processes sync anyway)
    resume_from_checkpoint: Optional[str] = None  # a checkpoint folder, or "latest" (newest in output_dir)
    # --- model
    init_from: Optional[str] = None          # a saved MatSeg model (folder or Hub id) to fine-tune
    encoder_checkpoint: Optional[str] = None  # ConvNeXt checkpoint (Hub id/folder), e.g. facebook/convnext-base-224-22k
    convnext_size: str = "base"
    depths: Optional[List[int]] = None        # explicit ConvNeXt depths (with hidden_sizes) instead of a named size
    hidden_sizes: Optional[List[int]] = None
    decoder_channels: Optional[List[int]] = None
    psp_channels: Optional[int] = None
    descriptor_dim: int = 128
    drop_path_rate: Optional[float] = None
    # --- loss and optimiser
    temperature: float = 0.2
    loss_scope: str = "image"                 # "image" (paper) or "batch" (reference code)
    learning_rate: float = 1e-5
    weight_decay: float = 4e-5
    warmup_steps: int = 0
    max_grad_norm: Optional[float] = None
    gradient_accumulation_steps: int = 1
    mixed_precision: str = "auto"             # auto: bf16 on GPUs that support it, else fp16 on GPU, no on CPU
    # --- data
    data_sources: List[Dict[str, Any]] = field(default_factory=_default_sources)
    min_size: int = 250
    max_size: int = 900
    size_multiple: int = 32
    max_pixels: int = 700 * 700 * 2
    max_batch_size: int = 7
    min_batch_size: int = 2                   # >= 2: the PSP pools to 1x1 and BatchNorm needs 2 values per channel
    max_materials: int = 10
    augment: bool = True
    num_workers: int = 2
    prefetch_factor: int = 2
    overfit_one_batch: bool = False           # debugging: train on the first batch over and over
    # --- evaluation, logging, checkpoints
    eval_every: int = 1000
    eval_benchmark: Optional[str] = "builtin"  # "builtin" sample, benchmark folder, built dataset, Hub id; null: off
    eval_max_size: int = 700
    eval_limit: Optional[int] = None
    eval_scenes: int = 100                     # held-out generated 2D scenes scored with triplet accuracy (0: off)
    eval_scene_size: int = 256
    eval_seed: int = 1_000_003
    # what picks best/: held-out generated scenes ("scenes/<metric>"); the benchmark is the test set, reported only
    # ("benchmark/<metric>" selects on it: warned about and said in the model card); null: no best/
    best_metric: Optional[str] = "scenes/point_triplet"
    logging_every: int = 10
    report_to: str = "tensorboard"             # any accelerate tracker name, "all" or "none"
    checkpoint_every: int = 1000
    keep_checkpoints: int = 2
    push_to_hub: Optional[str] = None          # repo id for the best model (pushed at the end)
    hub_git_remote: Optional[str] = None       # publish by git push to this remote instead of HTTP
    hub_private: bool = False
    # --- multi-process
    sync_batchnorm: bool = True                # SyncBatchNorm across GPU processes (small per-GPU batches)

    # ------------------------------------------------------------------ helpers
    @classmethod
    def field_names(cls) -> List[str]:
        return [f.name for f in dataclasses.fields(cls)]

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> "TrainConfig":
        if self.loss_scope not in ("image", "batch"):
            raise MatSegInputError(f"loss_scope must be 'image' or 'batch', got {self.loss_scope!r}")
        if self.mixed_precision not in ("auto", "no", "fp16", "bf16"):
            raise MatSegInputError(f"mixed_precision must be auto/no/fp16/bf16, got {self.mixed_precision!r}")
        if (self.depths is None) != (self.hidden_sizes is None):
            raise MatSegInputError("give both depths and hidden_sizes, or neither")
        if not self.data_sources:
            raise MatSegInputError("data_sources is empty")
        for i, src in enumerate(self.data_sources):
            if not isinstance(src, dict) or "type" not in src:
                raise MatSegInputError(f"data_sources[{i}] must be a mapping with a 'type', got {src!r}")
        for name in ("max_steps", "gradient_accumulation_steps", "min_size", "max_size", "max_pixels",
                     "max_batch_size", "logging_every", "checkpoint_every", "eval_every"):
            if getattr(self, name) <= 0:
                raise MatSegInputError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.best_metric is not None:
            group = self.best_metric.split("/", 1)[0]
            if group not in METRIC_GROUPS or "/" not in self.best_metric:
                raise MatSegInputError(f"best_metric must be 'scenes/<metric>' (held-out generated scenes) or "
                                       f"'benchmark/<metric>', or null; got {self.best_metric!r}")
            evaluating = bool(self.eval_benchmark) or self.eval_scenes > 0
            if evaluating and group == "scenes" and self.eval_scenes <= 0:
                raise MatSegInputError(f"best_metric {self.best_metric!r} picks best/ on held-out generated scenes, "
                                       "but eval_scenes is 0: set eval_scenes (e.g. 100), or best_metric null")
            if evaluating and group == "benchmark" and not self.eval_benchmark:
                raise MatSegInputError(f"best_metric {self.best_metric!r} needs eval_benchmark")
        return self

    @property
    def selects_on_test_set(self) -> bool:
        """True when ``best_metric`` is a benchmark (test-set) number: ``best/`` is then picked on the test set."""
        return bool(self.best_metric) and self.best_metric.startswith("benchmark/")


def _type_of(name: str):
    hints = typing.get_type_hints(TrainConfig)
    return hints[name]


def _coerce(name: str, value: Any) -> Any:
    """Check/convert ``value`` for field ``name`` (ints become floats for float fields, etc.)."""
    tp = _type_of(name)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is Union and type(None) in args:  # Optional[X]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            return None
        tp = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
            return value.lower() in ("true", "yes", "1")
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(float(value)) if float(value).is_integer() else None
            except ValueError:
                pass
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, bool):  # YAML 1.1 reads an unquoted no/yes/off/on as a boolean
            return "yes" if value else "no"
        if isinstance(value, (str, int, float)):
            return str(value)
    elif origin in (list, List):
        if isinstance(value, (list, tuple)):
            inner = args[0] if args else Any
            if inner is int:
                return [int(v) for v in value]
            return list(value)
    else:
        return value
    raise MatSegInputError(f"config field {name!r} expects {tp}, got {value!r}")


def _is_text_field(name: str) -> bool:
    tp = _type_of(name)
    return tp is str or (typing.get_origin(tp) is Union and str in typing.get_args(tp))


def _parse_value(text: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def parse_overrides(args: Sequence[str], raw: bool = False) -> Dict[str, Any]:
    """``["--max_steps", "10", "--lr=1"]`` -> ``{"max_steps": 10, "lr": 1}`` (values read as YAML; with ``raw``,
    the text as given, ``True`` for a bare flag)."""
    parse = (lambda text: text) if raw else _parse_value
    out: Dict[str, Any] = {}
    args = list(args)
    i = 0
    while i < len(args):
        token = args[i]
        if not token.startswith("--") or token == "--":
            raise MatSegInputError(f"unexpected command-line argument {token!r}; use --key value or --key=value")
        key = token[2:]
        if "=" in key:
            key, text = key.split("=", 1)
            value = parse(text)
            i += 1
        elif i + 1 < len(args) and not args[i + 1].startswith("--"):
            value = parse(args[i + 1])
            i += 2
        else:
            value = True
            i += 1
        out[key.replace("-", "_")] = value
    return out


def load_config(path: Optional[Union[str, os.PathLike]] = None, overrides: Sequence[str] = (),
                **values: Any) -> TrainConfig:
    """YAML file (optional) + command-line overrides + keyword values -> a validated :class:`TrainConfig`.

    Raises:
        MatSegInputError: unknown key (the message lists the valid ones) or a value of the wrong type.
    """
    import yaml

    data: Dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise MatSegInputError(f"config file {p} not found")
        loaded = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        if not isinstance(loaded, dict):
            raise MatSegInputError(f"config file {p} must hold a mapping of settings")
        data.update({str(k).replace("-", "_"): v for k, v in loaded.items()})
    parsed, texts = parse_overrides(overrides), parse_overrides(overrides, raw=True)
    for key, value in parsed.items():  # text fields keep the text as typed (--mixed_precision no)
        text = texts[key]
        if key in TrainConfig.field_names() and _is_text_field(key) and isinstance(text, str) \
                and text.lower() not in ("null", "none", "~"):
            value = text
        data[key] = value
    data.update(values)
    names = set(TrainConfig.field_names())
    unknown = sorted(set(data) - names)
    if unknown:
        raise MatSegInputError(f"unknown config key(s) {unknown}; valid keys: {sorted(names)}")
    return TrainConfig(**{k: _coerce(k, v) for k, v in data.items()}).validate()


def save_config(config: TrainConfig, path: Union[str, os.PathLike]) -> None:
    """Write the resolved configuration as YAML."""
    import yaml

    from ..utils.files import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(config.to_dict(), sort_keys=False))


__all__ = ["TrainConfig", "load_config", "parse_overrides", "save_config"]
