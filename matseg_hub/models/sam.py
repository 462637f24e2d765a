"""SAM / SAM 2 as a promptable scorer (``sam:ORG/NAME`` or ``sam:FOLDER``): point prompts -> mask probabilities.

The scorer follows the predictor pattern of ``facebookresearch/segment-anything``: :meth:`SamScorer.set_image`
runs the image encoder once per image (the processor resizes the longest side, normalises and pads; then
``model.get_image_embeddings``) and keeps the embedding; every :meth:`SamScorer.similarity_maps` call then runs only
the prompt encoder and mask decoder, for all prompts of the call at once, in the point-batch dimension
(``input_points`` float [1, P, k, 2], ``input_labels`` int [1, P, k]).

Prompts with different numbers of points are *not* padded into one call: the label ``-10`` that ``SamProcessor``
pads with gives a zero token, and that token still takes part in the mask decoder's attention, so a padded prompt's
mask differs from the same prompt decoded alone (by ~1e-2 in logits on a random model). Prompts are grouped by their
number of points instead, one decoder call per group (chunked by ``chunk_size``): in the triplet protocol nearly
every prompt has the same length, and the maps equal the one-prompt-per-call maps (float rounding only).

Protocol (SPEC §9; see ``docs/baselines.md``): the map of a prompt is ``sigmoid`` of the chosen mask's logits after
the processor's post-processing (bilinear upsampling to the padded input, unpadding, bilinear resizing to the image
given to :meth:`SamScorer.set_image`). Mask choice ``multimask="auto"``: for a prompt of one point, the model's three
multimask outputs and the one with the highest predicted IoU; for more points, the single-mask output (as the SAM
authors advise for ambiguous single clicks); ``"always"`` / ``"never"`` force one or the other.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import MatSegInputError, MissingDependencyError, require
from ..utils.logging import get_logger
from .scorers import (MULTIMASK_CHOICES, Prompt, PromptableScorer, _check_image, _first_line, _load_errors,
                      _looks_like_path, torch_device)

logger = get_logger(__name__)

SAM_MODEL_TYPES = ("sam", "sam2")
DEFAULT_CHUNK_SIZE = 64
POSTPROCESS_CHUNK = 16  # masks upsampled at once (each is a float32 [pad_h, pad_w] = 4 MiB at SAM's 1024 px)

PROTOCOL = ("prompt = the anchor plus prompt_points-1 seeded points of its group as positive points (label 1) and "
            "negative_points seeded points of other groups as negatives (label 0), at the disc centres (x, y) "
            "rescaled into the model's input frame as the processor does; similarity map = sigmoid of the chosen "
            "mask's logits post-processed (upsampled, unpadded, resized) to the image; multimask 'auto' = the "
            "highest-predicted-IoU of the 3 multimask outputs for a 1-point prompt, the single-mask output otherwise; "
            "a point's similarity = mean map value over its disc; the anchor's other prompt points are left out of "
            "its triplets")


def _read_model_type(name: str, hub_kwargs: Dict[str, Any]) -> str:
    from transformers import PretrainedConfig

    if _looks_like_path(name) and not Path(name).expanduser().exists():
        raise MatSegInputError(f"cannot load a SAM model from {name!r}: the folder does not exist; give a folder "
                               f"written by save_pretrained (config.json + weights) or a Hub id such as "
                               f"'facebook/sam-vit-base'")
    try:
        config_dict, _ = PretrainedConfig.get_config_dict(str(Path(name).expanduser()) if _looks_like_path(name)
                                                          else name, **hub_kwargs)
    except (OSError, ValueError, KeyError) as exc:
        raise MatSegInputError(f"cannot load a SAM model from {name!r}: no readable config.json "
                               f"({_first_line(exc)})") from None
    model_type = config_dict.get("model_type") if isinstance(config_dict, dict) else None
    if model_type not in SAM_MODEL_TYPES:
        raise MatSegInputError(f"cannot load a SAM model from {name!r}: its config.json has model_type "
                               f"{model_type!r}, expected one of {SAM_MODEL_TYPES} (SamModel / Sam2Model); use "
                               f"'features:' for a backbone or a plain path for a MatSeg net")
    return model_type


def load_sam_scorer(name_or_path: Union[str, os.PathLike], *, device: Optional[str] = None, prompt_points: int = 1,
                    negative_points: int = 0, multimask: str = "auto", chunk_size: int = DEFAULT_CHUNK_SIZE,
                    **hub_kwargs: Any) -> "SamScorer":
    """Load ``SamModel`` + ``SamProcessor`` (or ``Sam2Model`` + ``Sam2Processor``) as a :class:`SamScorer`.

    The kind is read from ``config.json``'s ``model_type`` (``"sam"`` or ``"sam2"``).

    Args:
        name_or_path: a folder written by ``save_pretrained`` (model + processor) or a Hub id
            (``facebook/sam-vit-base``, ``facebook/sam2.1-hiera-tiny``).
        device: torch device (default: ``"cuda"`` when available, else ``"cpu"``).
        prompt_points: k >= 1 positive points per triplet prompt (the paper: 1, 2, 4, 8).
        negative_points: m >= 0 negative points per triplet prompt (not the paper's protocol).
        multimask: ``"auto"``, ``"always"`` or ``"never"`` (see the module docstring).
        chunk_size: prompts per mask-decoder call.
        hub_kwargs: passed to ``from_pretrained`` (``revision``, ``token``, ``local_files_only``, ...).

    Raises:
        MatSegInputError: a missing folder, a folder or id that is not a SAM model, a bad option.
        MissingDependencyError: SAM 2's image processor needs ``torchvision``.
    """
    if multimask not in MULTIMASK_CHOICES:
        raise MatSegInputError(f"--multimask must be one of {MULTIMASK_CHOICES}, got {multimask!r}")
    if int(chunk_size) < 1:
        raise MatSegInputError(f"chunk_size must be at least 1, got {chunk_size}")
    device = torch_device(device)
    name = str(name_or_path)
    source = str(Path(name).expanduser()) if _looks_like_path(name) else name
    model_type = _read_model_type(name, hub_kwargs)
    if model_type == "sam":
        from transformers import SamModel as model_cls, SamProcessor as processor_cls
    else:
        require("torchvision", f"SAM 2 ({name!r}: Sam2Processor)")  # Sam2ImageProcessor has no PIL backend
        from transformers import Sam2Model as model_cls, Sam2Processor as processor_cls
    try:
        model = model_cls.from_pretrained(source, **hub_kwargs)
    except _load_errors() as exc:  # a malformed config value, truncated weights, ...
        raise MatSegInputError(f"cannot load the {model_cls.__name__} weights from {name!r}: "
                               f"{_first_line(exc)}") from None
    try:
        processor = processor_cls.from_pretrained(source, **hub_kwargs)
    except ImportError as exc:
        if "torchvision" in str(exc).lower():
            raise MissingDependencyError("torchvision", f"SAM 2 ({processor_cls.__name__})") from None
        raise
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise MatSegInputError(f"cannot load the {processor_cls.__name__} saved with {name!r} "
                               f"(preprocessor_config.json): {_first_line(exc)}; save the processor beside the model "
                               f"(processor.save_pretrained(folder))") from None
    model = model.to(device).eval()
    return SamScorer(model, processor, name=f"sam:{name}", prompt_points=prompt_points,
                     negative_points=negative_points, multimask=multimask, chunk_size=chunk_size)


class SamScorer(PromptableScorer):
    """SAM / SAM 2 answering point prompts with mask probabilities (see the module docstring for the protocol).

    Args:
        model: a ``SamModel`` or ``Sam2Model`` (eval mode, any device / dtype).
        processor: the matching ``SamProcessor`` / ``Sam2Processor``.
        name: shown in tables.
        prompt_points, negative_points: the triplet prompt (:func:`~matseg_hub.models.scorers.anchor_prompts`).
        multimask: ``"auto"``, ``"always"`` or ``"never"``.
        chunk_size: prompts per mask-decoder call.
    """

    def __init__(self, model: Any, processor: Any, *, name: str = "sam", prompt_points: int = 1,
                 negative_points: int = 0, multimask: str = "auto", chunk_size: int = DEFAULT_CHUNK_SIZE):
        super().__init__(name, prompt_points=prompt_points, negative_points=negative_points)
        if multimask not in MULTIMASK_CHOICES:
            raise MatSegInputError(f"--multimask must be one of {MULTIMASK_CHOICES}, got {multimask!r}")
        if int(chunk_size) < 1:
            raise MatSegInputError(f"chunk_size must be at least 1, got {chunk_size}")
        model_type = getattr(model.config, "model_type", None)
        if model_type not in SAM_MODEL_TYPES:
            raise MatSegInputError(f"SamScorer needs a SamModel or Sam2Model; got model_type {model_type!r}")
        self.model = model.eval()
        self.processor = processor
        self.model_type = model_type
        self.multimask = multimask
        self.chunk_size = int(chunk_size)
        self._image_size: Optional[Tuple[int, int]] = None      # (H, W) of the image given to set_image
        self._input_size: Optional[Tuple[int, int]] = None      # (h, w) of the resized image inside the padded input
        self._embeddings: Any = None

    # ------------------------------------------------------------------------------------------------------------
    @property
    def device(self):
        """The ``torch.device`` the model's weights are on (inputs are moved there)."""
        return next(self.model.parameters()).device

    @property
    def dtype(self):
        """The model's weight dtype (``torch.float32`` unless converted); pixel values and points are cast to it."""
        return next(self.model.parameters()).dtype

    def set_image(self, image: np.ndarray) -> None:
        """Compute and keep the image embedding of ``image`` (RGB uint8 [H, W, 3]); the one image-encoder pass."""
        import torch

        image = _check_image(image)
        self._image_size = self._input_size = self._embeddings = None   # no stale image if this one fails
        inputs = self.processor(images=image, return_tensors="pt")
        pixel_values = inputs["pixel_values"].to(self.device, self.dtype)
        if self.model_type == "sam":
            reshaped = inputs["reshaped_input_sizes"][0]
            input_size = (int(reshaped[0]), int(reshaped[1]))
        else:
            side = int(self.processor.target_size)
            input_size = (side, side)
        with torch.no_grad():
            embeddings = self.model.get_image_embeddings(pixel_values)
        self._image_size = (int(image.shape[0]), int(image.shape[1]))
        self._input_size = input_size
        self._embeddings = embeddings

    def input_coordinates(self, xy: np.ndarray) -> np.ndarray:
        """float64 [..., 2] pixel centres ``(x, y)`` of the set image -> the model's input frame, as the processor
        rescales ``input_points`` (SAM: ``x * new_w / W``, ``y * new_h / H`` with the resized size; SAM 2: the square
        target size)."""
        if self._image_size is None:
            raise MatSegInputError("no image set: call set_image(image) first")
        height, width = self._image_size
        new_h, new_w = self._input_size
        out = np.asarray(xy, dtype=np.float64).copy()
        out[..., 0] = out[..., 0] * (new_w / width)
        out[..., 1] = out[..., 1] * (new_h / height)
        return out

    def _prompt_arrays(self, prompt: Prompt) -> Tuple[np.ndarray, np.ndarray]:
        if not isinstance(prompt, Prompt):
            raise MatSegInputError(f"similarity_maps takes Prompt objects; got {type(prompt).__name__}")
        pos = np.asarray(prompt.positive).reshape(-1, 3)
        neg = np.asarray(prompt.negative).reshape(-1, 3)
        if pos.shape[0] == 0:
            raise MatSegInputError("a prompt needs at least one positive point")
        height, width = self._image_size
        for point in np.concatenate([pos, neg]):
            if not (0 <= point[0] < width and 0 <= point[1] < height):
                raise MatSegInputError(f"prompt point ({point[0]}, {point[1]}) is outside the {width}x{height} image")
        xy = np.concatenate([pos[:, :2], neg[:, :2]]).astype(np.float64)
        labels = np.concatenate([np.ones(pos.shape[0], np.int64), np.zeros(neg.shape[0], np.int64)])
        return xy, labels

    def _multimask_for(self, num_points: int) -> bool:
        if self.multimask == "always":
            return True
        if self.multimask == "never":
            return False
        return num_points == 1

    def _decode(self, xy: np.ndarray, labels: np.ndarray):
        """One prompt-encoder + mask-decoder call for P prompts of k points each.

        Args:
            xy: float64 [P, k, 2] in the set image's pixels; labels: int64 [P, k] (1 positive, 0 negative).

        Returns:
            ``(logits, iou)``: float32 torch [P, h, w] low-resolution logits of the chosen mask of each prompt, and
            float32 torch [P] its predicted IoU.
        """
        import torch

        multimask = self._multimask_for(xy.shape[1])
        points = torch.as_tensor(self.input_coordinates(xy), dtype=self.dtype, device=self.device)[None]
        lab = torch.as_tensor(labels, dtype=torch.int64, device=self.device)[None]
        with torch.no_grad():
            out = self.model(image_embeddings=self._embeddings, input_points=points, input_labels=lab,
                             multimask_output=multimask)
        masks = out.pred_masks[0].float()        # [P, M, h, w]
        iou = out.iou_scores[0].float()          # [P, M]
        best = iou.argmax(dim=1)                 # M == 1 without multimask
        rows = torch.arange(masks.shape[0], device=masks.device)
        return masks[rows, best], iou[rows, best]

    def decoder_logits(self, prompts: Sequence[Prompt], *, batched: bool = True):
        """The prompt-encoder + mask-decoder part alone (timed by ``bench/bench_sam.py``).

        Args:
            prompts: P prompts.
            batched: True = one call per group of prompts with the same number of points (chunked by
                ``chunk_size``); False = one call per prompt.

        Returns:
            ``(logits, iou)``: float32 torch [P, h, w] low-resolution logits of each prompt's chosen mask, float32
            torch [P] its predicted IoU, in the order of ``prompts``.
        """
        import torch

        if self._embeddings is None:
            raise MatSegInputError("no image set: call set_image(image) first")
        arrays = [self._prompt_arrays(p) for p in prompts]
        if not arrays:
            return torch.zeros((0, 1, 1)), torch.zeros(0)
        logits: List[Any] = [None] * len(arrays)
        ious: List[Any] = [None] * len(arrays)
        if batched:
            groups: Dict[int, List[int]] = {}
            for i, (xy, _) in enumerate(arrays):
                groups.setdefault(xy.shape[0], []).append(i)
            batches = [idx[s:s + self.chunk_size] for idx in groups.values()
                       for s in range(0, len(idx), self.chunk_size)]
        else:
            batches = [[i] for i in range(len(arrays))]
        for idx in batches:
            xy = np.stack([arrays[i][0] for i in idx])
            lab = np.stack([arrays[i][1] for i in idx])
            chunk_logits, chunk_iou = self._decode(xy, lab)
            for j, i in enumerate(idx):
                logits[i] = chunk_logits[j]
                ious[i] = chunk_iou[j]
        return torch.stack(logits), torch.stack(ious)

    def _postprocess(self, logits) -> np.ndarray:
        """float32 torch [P, h, w] low-res logits -> float32 numpy [P, H, W] probabilities at the set image's size."""
        import torch

        height, width = self._image_size
        out = np.empty((logits.shape[0], height, width), dtype=np.float32)
        for s in range(0, logits.shape[0], POSTPROCESS_CHUNK):
            masks = logits[s:s + POSTPROCESS_CHUNK][None]           # [1, c, h, w]
            if self.model_type == "sam":
                up = self.processor.post_process_masks([masks], [[height, width]], [list(self._input_size)],
                                                       binarize=False)[0]
            else:
                up = self.processor.post_process_masks([masks], [[height, width]], binarize=False)[0]
            out[s:s + POSTPROCESS_CHUNK] = torch.sigmoid(up[0].float()).cpu().numpy()
        return out

    def similarity_maps(self, prompts: Sequence[Prompt], *, batched: bool = True) -> np.ndarray:
        """float32 [P, H, W] in [0, 1]: each prompt's mask probability at the set image's size.

        Args:
            prompts: P :class:`~matseg_hub.models.scorers.Prompt` (positive points label 1, negatives label 0, at
                the disc centres).
            batched: True (default) = all prompts through the decoder in the point-batch dimension, one call per
                prompt length; False = one decoder call per prompt (:meth:`per_prompt_similarity_maps`).
        """
        if self._image_size is None:
            raise MatSegInputError("no image set: call set_image(image) first")
        if len(prompts) == 0:
            return np.zeros((0,) + self._image_size, dtype=np.float32)
        logits, _ = self.decoder_logits(prompts, batched=batched)
        return self._postprocess(logits)

    def per_prompt_similarity_maps(self, prompts: Sequence[Prompt]) -> np.ndarray:
        """:meth:`similarity_maps` with one decoder call per prompt (the reference the batched path must equal)."""
        return self.similarity_maps(prompts, batched=False)

    def describe(self) -> Dict[str, Any]:
        out = super().describe()
        out.update(model_type=self.model_type, multimask=self.multimask, chunk_size=self.chunk_size,
                   input_size=int(self.model.config.vision_config.image_size) if self.model_type == "sam"
                   else int(getattr(self.processor, "target_size", 0) or 0),
                   protocol=PROTOCOL)
        return out


__all__ = ["SamScorer", "load_sam_scorer", "SAM_MODEL_TYPES", "PROTOCOL"]
