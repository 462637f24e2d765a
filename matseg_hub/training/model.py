"""Building, normalising inputs for, and saving the MatSeg model during training."""

from __future__ import annotations

from typing import Any, Dict, Optional

import torch

from ..utils.logging import get_logger

logger = get_logger(__name__)


def build_model(config) -> "Any":
    """A :class:`~matseg_hub.models.matseg.MatSegModel` for a :class:`~matseg_hub.training.config.TrainConfig`:

    * ``init_from``: a saved MatSeg model (folder or Hub id) to continue from;
    * ``encoder_checkpoint``: a new model whose encoder starts from that ConvNeXt checkpoint (the paper:
      ImageNet-pretrained ConvNeXt-base from the Hub);
    * otherwise a randomly initialised model of ``convnext_size`` or explicit ``depths``/``hidden_sizes``.

    Raises:
        MatSegInputError: ``init_from`` / ``encoder_checkpoint`` names no loadable checkpoint (a missing folder, an
            unknown Hub id, no connection): the field and the reason in one line.
    """
    from ..errors import MatSegInputError
    from ..models.matseg import MatSegConfig, MatSegModel

    def load(field: str, name: str, fn):
        try:
            return fn()
        except OSError as exc:  # transformers' error for a missing folder, an unknown repo or no connection
            reason = " ".join(str(exc).split())
            raise MatSegInputError(f"{field}: cannot load the checkpoint {name!r} ({reason})") from None

    extra: Dict[str, Any] = {"descriptor_dim": config.descriptor_dim}
    if config.decoder_channels is not None:
        extra["decoder_channels"] = list(config.decoder_channels)
    if config.psp_channels is not None:
        extra["psp_channels"] = int(config.psp_channels)
    if config.init_from:
        return load("init_from", config.init_from, lambda: MatSegModel.from_pretrained(config.init_from))
    if config.encoder_checkpoint:
        return load("encoder_checkpoint", config.encoder_checkpoint, lambda: MatSegModel.from_backbone_pretrained(
            config.encoder_checkpoint, drop_path_rate=config.drop_path_rate, **extra))
    cfg = MatSegConfig.from_convnext_size(config.convnext_size, depths=config.depths, hidden_sizes=config.hidden_sizes,
                                          drop_path_rate=config.drop_path_rate, **extra)
    return MatSegModel(cfg)


def normalize_images(images: torch.Tensor) -> torch.Tensor:
    """RGB 0-255 float [B, 3, H, W] -> ``pixel_values`` exactly as :class:`MatSegImageProcessor` normalises."""
    from ..models.matseg.image_processing_matseg import REFERENCE_MEAN, REFERENCE_STD

    mean = torch.tensor(REFERENCE_MEAN, dtype=torch.float32, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(REFERENCE_STD, dtype=torch.float32, device=images.device).view(1, 3, 1, 1)
    return (images.to(torch.float32) - mean) / std


def save_model(model, folder, *, metrics: Optional[Dict[str, float]] = None, training: Optional[str] = None,
               repo_id: Optional[str] = None, datasets=(), selection: Optional[str] = None) -> None:
    """``save_pretrained`` (safetensors) + the image processor + a model card holding ``metrics`` (benchmark
    numbers) and ``selection`` (how the checkpoint was picked, :func:`selection_text`)."""
    from ..models.matseg import MatSegImageProcessor

    card: Dict[str, Any] = {"license": "cc0-1.0", "training": training, "repo_id": repo_id,
                            "datasets": list(datasets), "selection": selection}
    if metrics:
        card["metrics"] = metrics
    model.save_pretrained(folder, model_card=card)
    MatSegImageProcessor().save_pretrained(folder)


def card_metrics(result: Dict[str, Any]) -> Dict[str, float]:
    """The benchmark numbers of an evaluation (``benchmark/point_triplet`` -> ``benchmark_point_triplet``): the
    test numbers a model card reports. Held-out scene numbers are the selection data, named in
    :func:`selection_text` instead."""
    return {k.replace("/", "_"): float(v) for k, v in result.items()
            if k.startswith("benchmark/") and k.endswith(("triplet", "top1"))}


def selection_text(config, result: Dict[str, Any], step: Optional[int] = None) -> str:
    """What picked a saved checkpoint, for its model card: the metric, its value and the data it was measured on
    (held-out generated scenes, or the benchmark, which the text then says is no unbiased test number).
    ``step=None``: the last checkpoint of the run (``final/``), not picked by any metric."""
    if step is None:
        head = "The last checkpoint of the run (not selected by any metric)."
    else:
        metric = config.best_metric
        value = result.get(metric)
        where = (f"{config.eval_scenes} held-out generated 2D scenes (seed {config.eval_seed}, "
                 f"{config.eval_scene_size} px), never trained on" if metric.startswith("scenes/") else
                 "the benchmark itself")
        head = (f"Step {step} was selected as the best by `{metric}` = {float(value):.4f} on {where}."
                if value is not None else f"Step {step}, selected by `{metric}`.")
        if config.selects_on_test_set:
            return (head + " **The benchmark numbers below are therefore not test numbers**: they were used to pick "
                    "this checkpoint and overestimate its accuracy on unseen photos.")
    scenes = {k: v for k, v in result.items() if k.startswith("scenes/") and k.endswith(("triplet", "top1"))}
    if scenes:
        head += " Held-out scenes: " + ", ".join(f"`{k}` {float(v):.4f}" for k, v in sorted(scenes.items())) + "."
    return head + " The benchmark numbers are test numbers: the benchmark was not used for training or selection."


def convert_sync_batchnorm(model: torch.nn.Module, *, num_processes: int, device_type: str,
                           enabled: bool = True) -> torch.nn.Module:
    """``torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)`` when ``enabled``, more than one process trains and
    the model has BatchNorm layers: small per-GPU batches (2-7 images) give noisy per-process batch statistics.
    PyTorch's SyncBatchNorm runs on GPUs only: on CPU processes (gloo) the model is returned as it is (logged)."""
    has_bn = any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    if not enabled or num_processes <= 1 or not has_bn:
        return model
    if device_type == "cpu":
        logger.info("SyncBatchNorm needs GPU processes; %d CPU processes keep per-process BatchNorm", num_processes)
        return model
    logger.info("BatchNorm synchronised across %d processes (SyncBatchNorm)", num_processes)
    return torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)


def mixed_precision_for(requested: str) -> str:
    """``auto`` -> ``bf16`` on GPUs that support it, ``fp16`` on other GPUs, ``no`` on CPU."""
    if requested != "auto":
        return requested
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "no"


__all__ = ["build_model", "card_metrics", "convert_sync_batchnorm", "mixed_precision_for", "normalize_images",
           "save_model", "selection_text"]
