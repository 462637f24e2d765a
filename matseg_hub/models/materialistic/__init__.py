"""Materialistic (Sharma et al., SIGGRAPH 2023) on the ``transformers`` stack, and its promptable scorer.

Importing this package registers ``MaterialisticConfig`` / ``MaterialisticModel`` with ``AutoConfig`` /
``AutoModel`` (model type ``"materialistic"``). ``load_materialistic_scorer`` is what ``materialistic:FOLDER`` model
specs resolve to (:func:`matseg_hub.models.scorers.resolve_scorer`); ``convert`` turns the authors' checkpoint into
a model folder.
"""

from __future__ import annotations

from .configuration import MaterialisticConfig, dino_vit_config
from .modeling import MaterialisticImageEmbeddings, MaterialisticModel, MaterialisticOutput, MaterialisticPreTrainedModel
from .scorer import MaterialisticScorer, load_materialistic_scorer, model_input_size, preprocess_image

__all__ = [
    "MaterialisticConfig",
    "MaterialisticImageEmbeddings",
    "MaterialisticModel",
    "MaterialisticOutput",
    "MaterialisticPreTrainedModel",
    "MaterialisticScorer",
    "dino_vit_config",
    "load_materialistic_scorer",
    "model_input_size",
    "preprocess_image",
    "register_auto_classes",
]


def register_auto_classes() -> None:
    """Register the Materialistic classes with the ``transformers`` Auto classes (idempotent)."""
    from transformers import AutoConfig, AutoModel

    AutoConfig.register(MaterialisticConfig.model_type, MaterialisticConfig, exist_ok=True)
    AutoModel.register(MaterialisticConfig, MaterialisticModel, exist_ok=True)


register_auto_classes()
