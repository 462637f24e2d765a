"""Model card (README.md) writer for saved / pushed MatSeg models."""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

from ...citation import CITATION, PAPER_URL as PAPER

DEFAULT_TAGS = ("matseg", "material-segmentation", "zero-shot", "image-segmentation", "convnext")
REFERENCE_CODE = "https://github.com/sagieppel/Zero-Shot-Material-State-Segmentation-Net"


def model_card_text(config: Any, *, license: Optional[str] = None, tags: Sequence[str] = (),
                    datasets: Sequence[str] = (), metrics: Optional[Mapping[str, float]] = None,
                    metrics_dataset: Optional[str] = None, metrics_dataset_name: str = "MatSeg benchmark",
                    repo_id: Optional[str] = None, description: Optional[str] = None,
                    training: Optional[str] = None, selection: Optional[str] = None) -> str:
    """README.md for a MatSeg model: YAML metadata + usage.

    Args:
        config: the model's :class:`MatSegConfig`.
        license: SPDX-style Hub licence id (e.g. ``"cc0-1.0"``, ``"apache-2.0"``); left out when None.
        tags: extra tags (the MatSeg tags are always there).
        datasets: Hub dataset ids the model was trained / evaluated on.
        metrics: measured numbers, e.g. ``{"triplet_accuracy": 0.92, "triplet_accuracy_soft": 0.84}``;
            written as ``model-index`` results on ``metrics_dataset`` (a dataset id) and in a table.
        repo_id: the repository's id, used in the usage snippet.
        description / training: free text paragraphs.
        selection: how this checkpoint was picked (which metric on which data), a "Model selection" section; the
            ``metrics`` are test numbers only when they were not used to pick it, which this section says.
    """
    from huggingface_hub import EvalResult, ModelCardData

    all_tags = list(dict.fromkeys([*DEFAULT_TAGS, *tags]))
    eval_results = None
    if metrics:
        dataset_id = metrics_dataset or (datasets[0] if datasets else "matseg")
        eval_results = [EvalResult(task_type="image-segmentation", task_name="Zero-shot material state segmentation",
                                   dataset_type=dataset_id, dataset_name=metrics_dataset_name, metric_type=name,
                                   metric_name=name, metric_value=float(value)) for name, value in metrics.items()]
    data = ModelCardData(license=license, library_name="transformers", pipeline_tag="image-segmentation",
                         tags=all_tags, datasets=list(datasets) or None,
                         base_model=getattr(config, "backbone", None) or None,
                         model_name=repo_id or "matseg", eval_results=eval_results)
    hidden = list(config.backbone_config.hidden_sizes)
    depths = list(config.backbone_config.depths)
    name = repo_id or "path/to/this/model"
    lines = [
        "---",
        data.to_yaml(),
        "---",
        "",
        f"# {repo_id or 'MatSeg descriptor network'}",
        "",
        description or ("Zero-shot material-state segmentation: a ConvNeXt U-Net that maps an image to a "
                        f"{config.descriptor_dim}-dimensional material descriptor per pixel; pixels of the same "
                        "material state have similar descriptors (cosine similarity). From *Learning Zero-Shot "
                        "Material States Segmentation by Implanting Natural Image Patterns in Synthetic Data* "
                        f"(NeurIPS 2024 Datasets & Benchmarks), [paper]({PAPER}), [reference code]({REFERENCE_CODE})."),
        "",
        "## Architecture",
        "",
        f"- encoder: ConvNeXt, depths {depths}, widths {hidden}, 4-channel stem (RGB + a zero channel)"
        + (f", initialised from `{config.backbone}`" if getattr(config, "backbone", None) else ""),
        f"- pyramid pooling on the last stage at scales {config.psp_scales}",
        f"- U-Net decoder with 3 skip connections (bilinear upsampling) to a {config.descriptor_dim}-d descriptor map at 1/4 resolution",
        "",
        "## Usage",
        "",
        "```python",
        "import matseg_hub.models.matseg  # registers the model type 'matseg' with AutoModel",
        "from transformers import AutoModel",
        "from matseg_hub.models.inference import MatSegPredictor",
        "from matseg_hub.utils.images import read_image",
        "",
        f'model = AutoModel.from_pretrained("{name}")  # or, without the import above: trust_remote_code=True',
        "predictor = MatSegPredictor(model)",
        'predictor.set_image(read_image("photo.jpg"))  # RGB uint8 [H, W, 3]',
        "similarity = predictor.similarity_map([[120, 80]])  # float32 [H, W], cosine similarity to the clicked point",
        "mask = predictor.mask([[120, 80]], threshold=0.9)  # bool [H, W]",
        "```",
        "",
        "Input: RGB; the image processor normalises with mean (123.68, 116.779, 103.939) and std 65 on 0-255 "
        "values. `MatSegImageProcessor.reference_evaluation()` reproduces the reference evaluation (BGR input, "
        "no padding).",
        "",
    ]
    if training:
        lines += ["## Training", "", training, ""]
    if selection:
        lines += ["## Model selection", "", selection, ""]
    if metrics:
        lines += ["## Results", "", f"On {metrics_dataset_name}:", "", "| metric | value |", "| --- | --- |"]
        lines += [f"| {k} | {float(v):.4f} |" for k, v in metrics.items()]
        lines += [""]
    lines += ["## Citation", "", "```bibtex", CITATION, "```", ""]
    return "\n".join(lines)
