"""The MatSeg model on the ``transformers`` stack.

Importing this package registers ``MatSegConfig`` / ``MatSegModel`` / ``MatSegImageProcessor`` with
``AutoConfig`` / ``AutoModel`` / ``AutoImageProcessor`` (model type ``"matseg"``), so that
``AutoModel.from_pretrained(path_or_repo_id)`` works once ``matseg_hub.models.matseg`` (or any of these names from
``matseg_hub``) has been imported: ``AutoModel.from_pretrained(matseg_hub.builtin_model_dir())`` loads the net that
ships inside the package (``matseg-tiny``).
"""

from __future__ import annotations

from ..builtin import builtin_model_dir
from .configuration_matseg import CONVNEXT_SIZES, MatSegConfig, convnext_encoder_config
from .image_processing_matseg import MatSegImageProcessor
from .modeling_matseg import MatSegModel, MatSegOutput, MatSegPreTrainedModel

__all__ = [
    "CONVNEXT_SIZES",
    "MatSegConfig",
    "MatSegImageProcessor",
    "MatSegModel",
    "MatSegOutput",
    "MatSegPreTrainedModel",
    "builtin_model_dir",
    "convnext_encoder_config",
    "register_auto_classes",
]


def register_auto_classes() -> None:
    """Register the MatSeg classes with the ``transformers`` Auto classes (idempotent)."""
    from transformers import AutoConfig, AutoImageProcessor, AutoModel

    AutoConfig.register(MatSegConfig.model_type, MatSegConfig, exist_ok=True)
    AutoModel.register(MatSegConfig, MatSegModel, exist_ok=True)
    try:
        AutoImageProcessor.register(MatSegConfig, image_processor_classes={"pil": MatSegImageProcessor}, exist_ok=True)
    except TypeError:  # pragma: no cover - transformers 4.x signature
        AutoImageProcessor.register(MatSegConfig, slow_image_processor_class=MatSegImageProcessor, exist_ok=True)


register_auto_classes()
