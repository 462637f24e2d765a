"""Materialistic as a :class:`~matseg_hub.models.scorers.PromptableScorer` (``materialistic:FOLDER`` model specs).

Protocol: a prompt's similarity map is the network's sigmoid score map for one click, at the prompt's FIRST
positive point (the anchor); further positive points and all negative points are ignored (the network takes one
click, as in the paper). Input policy (``MaterialisticConfig``): the image is resized with PIL (``resample``,
``"box"`` as the authors) so that its shortest edge is ``image_size`` (512, as the authors) and both sides are
multiples of the patch size (``resize_mode="shortest_edge"``; or ``"square"``: ``image_size`` x ``image_size``;
or ``"multiple"``: its own size rounded to the patch size), normalised with ImageNet's mean / std, and each score
map is resized back to the image's size (bilinear). The authors additionally centre-crop to 512x512, which a map of
the whole image cannot do.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import numpy as np

from ...errors import MatSegFormatError, MatSegInputError
from ...utils.logging import get_logger
from ..scorers import (PromptableScorer, Prompt, _check_image, _first_line, _load_errors, _looks_like_path,
                       torch_device)

logger = get_logger(__name__)


def model_input_size(height: int, width: int, config: Any) -> Tuple[int, int]:
    """(H', W') of the network input for an image of ``height`` x ``width`` under ``config``'s resize policy
    (both multiples of the patch size, at least one patch)."""
    patch = int(config.patch_size)

    def to_patch(value: float) -> int:
        return max(patch, int(round(value / patch)) * patch)

    if config.resize_mode == "square":
        side = to_patch(config.image_size)
        return side, side
    if config.resize_mode == "multiple":
        return to_patch(height), to_patch(width)
    scale = config.image_size / min(height, width)
    return to_patch(height * scale), to_patch(width * scale)


def preprocess_image(image: np.ndarray, config: Any):
    """RGB uint8 [H, W, 3] -> ``pixel_values`` float32 torch [1, 3, H', W'] (resized as
    :func:`model_input_size`, ``/255``, normalised with ``config.image_mean`` / ``image_std``)."""
    import torch
    from PIL import Image

    image = _check_image(image)
    height, width = image.shape[:2]
    size = model_input_size(height, width, config)
    if size != (height, width):
        filters = {"box": Image.BOX, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}
        image = np.asarray(Image.fromarray(np.ascontiguousarray(image)).resize((size[1], size[0]),
                                                                                 filters[config.resample]))
    x = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).float().div(255.0)
    mean = torch.tensor(config.image_mean, dtype=torch.float32)[:, None, None]
    std = torch.tensor(config.image_std, dtype=torch.float32)[:, None, None]
    return ((x - mean) / std)[None]


def scale_points(points: np.ndarray, image_size: Tuple[int, int], input_size: Tuple[int, int]) -> np.ndarray:
    """int64 [P, 2] ``(x, y)`` image pixels -> the input pixels whose area holds each pixel's centre."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    (h, w), (hi, wi) = image_size, input_size
    x = np.clip(np.floor((pts[:, 0] + 0.5) * wi / w), 0, wi - 1)
    y = np.clip(np.floor((pts[:, 1] + 0.5) * hi / h), 0, hi - 1)
    return np.stack([x, y], axis=1).astype(np.int64)


class MaterialisticScorer(PromptableScorer):
    """Promptable scorer around a :class:`~matseg_hub.models.materialistic.MaterialisticModel`.

    :meth:`set_image` runs the click-independent part once (backbone, reassemble, keys / values);
    :meth:`similarity_maps` decodes the prompts' clicks ``prompt_batch_size`` at a time.
    """

    takes_prompt_points = False  # one click per map: --prompt-points 1 2 4 8 scores it once

    def __init__(self, model: Any, *, name: str = "materialistic", device: Optional[str] = None,
                 prompt_points: int = 1, negative_points: int = 0, prompt_batch_size: int = 4):
        super().__init__(name, prompt_points=prompt_points, negative_points=negative_points)
        if prompt_batch_size < 1:
            raise MatSegInputError(f"prompt_batch_size must be at least 1, got {prompt_batch_size}")
        self.device = torch_device(device)
        self.model = model.to(self.device).eval()
        self.config = model.config
        self.prompt_batch_size = int(prompt_batch_size)
        if prompt_points > 1 or negative_points > 0:
            logger.info("materialistic uses only each prompt's first positive point; the other %d positive and %d "
                        "negative prompt points are ignored", prompt_points - 1, negative_points)
        self._image_size: Optional[Tuple[int, int]] = None
        self._embeddings: Any = None

    def set_image(self, image: np.ndarray) -> None:
        """Take an RGB uint8 [H, W, 3] image: preprocess it and cache its click-independent embeddings."""
        import torch

        pixel_values = preprocess_image(image, self.config).to(self.device)
        self._image_size = self._embeddings = None  # no stale image if the model pass fails
        with torch.inference_mode():
            embeddings = self.model.get_image_embeddings(pixel_values)
        self._image_size = (int(image.shape[0]), int(image.shape[1]))
        self._embeddings = embeddings

    def similarity_maps(self, prompts: Sequence[Prompt]) -> np.ndarray:
        """float32 [P, H, W] in [0, 1]: per prompt, the score map of a click at its first positive point."""
        import torch
        from torch.nn import functional as F

        if self._embeddings is None or self._image_size is None:
            raise MatSegInputError("no image set: call set_image(image) first")
        height, width = self._image_size
        if not prompts:
            return np.zeros((0, height, width), dtype=np.float32)
        clicks = []
        for i, prompt in enumerate(prompts):
            if not isinstance(prompt, Prompt) or prompt.positive.shape[0] == 0:
                raise MatSegInputError(f"prompt {i} must be a Prompt with at least one positive point")
            x, y = int(prompt.positive[0, 0]), int(prompt.positive[0, 1])
            if not (0 <= x < width and 0 <= y < height):
                raise MatSegInputError(f"prompt {i}: point ({x}, {y}) is outside the {width}x{height} image")
            clicks.append((x, y))
        points = scale_points(np.asarray(clicks), (height, width), self._embeddings.input_size)
        out = np.empty((len(prompts), height, width), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(prompts), self.prompt_batch_size):
                chunk = torch.from_numpy(points[start:start + self.prompt_batch_size]).to(self.device)
                scores = torch.sigmoid(self.model.decode(self._embeddings, chunk).float())
                if tuple(scores.shape[-2:]) != (height, width):
                    scores = F.interpolate(scores, size=(height, width), mode="bilinear", align_corners=False)
                out[start:start + chunk.shape[0]] = scores[:, 0].clamp_(0, 1).cpu().numpy()
        return out

    def describe(self) -> Dict[str, Any]:
        out = super().describe()
        out.update(protocol="score map of a click at the prompt's first positive point",
                   image_size=self.config.image_size, resize_mode=self.config.resize_mode,
                   resample=self.config.resample)
        return out


def _check_folder(path: Path) -> None:
    config_file = path / "config.json"
    if not config_file.is_file():
        raise MatSegFormatError("not a model folder (no config.json); convert the authors' checkpoint with "
                                "python -m matseg_hub.models.materialistic.convert", path=path)
    try:
        data = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MatSegFormatError(f"cannot read the model config: {exc}", path=config_file) from None
    model_type = data.get("model_type") if isinstance(data, dict) else None
    if model_type != "materialistic":
        raise MatSegFormatError(f"is a {model_type!r} model, not a Materialistic one (use the matching model spec, "
                                f"or convert a Materialistic checkpoint)", path=config_file, field="model_type")


def load_materialistic_scorer(path: Union[str, os.PathLike], *, device: Optional[str] = None, prompt_points: int = 1,
                              negative_points: int = 0, prompt_batch_size: int = 4,
                              **hub_kwargs: Any) -> MaterialisticScorer:
    """A :class:`MaterialisticScorer` for a saved :class:`MaterialisticModel` folder (or Hub id ``ORG/NAME``).

    Args:
        path: folder written by ``save_pretrained`` / the converter (``config.json`` with ``model_type``
            ``"materialistic"``), or a Hub model id.
        device: torch device (default: cuda when available).
        prompt_points, negative_points: how triplet prompts are built (only the first positive point is used).
        prompt_batch_size: clicks decoded per network call (bounds memory: ~1 GB per click at 512 px).
        hub_kwargs: passed to ``from_pretrained`` (``revision``, ``token``, ``local_files_only``, ...).

    Raises:
        MatSegInputError: the folder does not exist (and is no Hub id). MatSegFormatError: it holds no
        Materialistic model, or its weights cannot be read.
    """
    from .modeling import MaterialisticModel

    target = Path(os.fspath(path)).expanduser()
    text = os.fspath(path)
    if target.exists():
        if not target.is_dir():
            raise MatSegInputError(f"materialistic: {target} is a file; give the model folder (config.json + weights)")
        _check_folder(target)
        source = str(target)
    elif not _looks_like_path(text) and all(text.split("/")):
        source = text  # a Hub id
    else:
        raise MatSegInputError(f"materialistic: model folder not found: {text} (give a folder written by "
                               f"save_pretrained or by python -m matseg_hub.models.materialistic.convert)")
    try:
        model = MaterialisticModel.from_pretrained(source, **hub_kwargs)
    except _load_errors() as exc:  # a malformed config.json value, truncated weights, ...
        raise MatSegFormatError(f"cannot load a Materialistic model: {_first_line(exc)}", path=source) from None
    return MaterialisticScorer(model, name=f"materialistic:{text}", device=device, prompt_points=prompt_points,
                               negative_points=negative_points, prompt_batch_size=prompt_batch_size)


__all__ = ["MaterialisticScorer", "load_materialistic_scorer", "preprocess_image", "model_input_size", "scale_points"]
