"""Convert the authors' Materialistic checkpoint (``prafull7/materialistic``) into a :class:`MaterialisticModel`.

Usage::

    python -m matseg_hub.models.materialistic.convert checkpoints/materialistic_checkpoint/last.ckpt \\
        --output materialistic-dino-vitb8 [--push-to-hub ORG/NAME]

The checkpoint is the PyTorch Lightning ``.ckpt`` of ``Transformer_pl`` (``{"state_dict": {"net.<key>": ...}}``) or
a ``model.pth`` state dict (keys possibly prefixed ``module.``), or a folder holding one of them. ``<key>`` follows
the authors' ``src/models/transformer.py`` (``Transformer``): the DINO ViT under ``dino_model.`` (timm / DINO naming)
and the decoder. Key mapping (``n`` = 1..4 in the authors' names, ``n-1`` in ours):

================================================================  =================================================
authors (``Transformer``)                                         MaterialisticModel
================================================================  =================================================
``dino_model.cls_token`` / ``pos_embed``                          ``backbone.embeddings.cls_token`` /
                                                                  ``position_embeddings``
``dino_model.patch_embed.proj``                                   ``backbone.embeddings.patch_embeddings.projection``
``dino_model.blocks.{i}.norm1`` / ``norm2``                       ``backbone.layers.{i}.layernorm_before`` / ``_after``
``dino_model.blocks.{i}.attn.qkv`` (fused, split in 3)            ``backbone.layers.{i}.attention.{q,k,v}_proj``
``dino_model.blocks.{i}.attn.proj``                               ``backbone.layers.{i}.attention.o_proj``
``dino_model.blocks.{i}.mlp.fc1`` / ``fc2``                       ``backbone.layers.{i}.mlp.fc1`` / ``fc2``
``dino_model.norm``                                               ``backbone.layernorm`` (unused by the forward)
``spatial_transform_{n}.0.project.0``                             ``reassemble.{n-1}.readout_projection``
``spatial_transform_{n}.2``                                       ``reassemble.{n-1}.projection``
``cross_attention_{n}.LayerNorm``                                 ``cross_attention.{n-1}.input_norm``
``cross_attention_{n}.get_reference_embedding.``                  ``cross_attention.{n-1}.reference_encoder.fc1`` /
``reference_feature_extractor.0`` / ``.2``                        ``fc2``
``cross_attention_{n}.query`` / ``key`` / ``value``               ``cross_attention.{n-1}.query`` / ``key`` / ``value``
``cross_attention_{n}.out`` / ``out_norm``                        ``cross_attention.{n-1}.output_projection`` /
                                                                  ``output_norm``
``fusion_{n}.resConfUnit{r}.conv{c}``                             ``fusion.{n-1}.residual_layer{r}.convolution{c}``
``fusion_{n}.out_conv``                                           ``fusion.{n-1}.projection``
``out_conv.{0,2,4,6}``                                            ``head.layers.{0,1,2,3}``
``fusion_{n}.layer_norm_1``, ``fusion_4.resConfUnit1``,           dropped: never used by the authors' forward
``dino_model.head``
================================================================  =================================================

Transformers 4.x names the ViT layers ``encoder.layer.{i}.attention.attention.{query,key,value}`` etc.; the
converter writes whichever names the installed ``ViTModel`` has. The authors' forward is not ported here (their
repository has no licence); ``bench/bench_materialistic.py`` checks a conversion against it.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

from ...errors import MatSegFormatError, MatSegInputError
from ...utils.logging import get_logger

logger = get_logger(__name__)

AUTHORS_URL = "https://github.com/prafull7/materialistic"
#: keys of the authors' state dict that their forward never uses
DROPPED = (re.compile(r"fusion_\d\.layer_norm_1\.(weight|bias)$"), re.compile(r"fusion_4\.resConfUnit1\.conv\d\.(weight|bias)$"),
           re.compile(r"dino_model\.head\..*"))

_VIT_NAMES_5 = {"norm1": "layernorm_before", "norm2": "layernorm_after", "attn.proj": "attention.o_proj",
                "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2", "qkv": ("attention.q_proj", "attention.k_proj",
                                                                    "attention.v_proj"), "layer": "layers"}
_VIT_NAMES_4 = {"norm1": "layernorm_before", "norm2": "layernorm_after", "attn.proj": "attention.output.dense",
                "mlp.fc1": "intermediate.dense", "mlp.fc2": "output.dense",
                "qkv": ("attention.attention.query", "attention.attention.key", "attention.attention.value"),
                "layer": "encoder.layer"}
_CROSS_PARTS = {"LayerNorm": "input_norm", "get_reference_embedding.reference_feature_extractor.0": "reference_encoder.fc1",
                "get_reference_embedding.reference_feature_extractor.2": "reference_encoder.fc2", "query": "query",
                "key": "key", "value": "value", "out": "output_projection", "out_norm": "output_norm"}


def strip_prefixes(checkpoint: Mapping[str, Any]) -> Dict[str, Any]:
    """The authors' ``Transformer`` state dict from a Lightning checkpoint (``state_dict``, ``net.`` prefix) or a
    ``model.pth`` (``module.`` prefix); other entries are returned unchanged."""
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, Mapping) else checkpoint
    if not isinstance(state, Mapping):
        raise MatSegFormatError("expected a state dict (a mapping of tensors) or a Lightning checkpoint",
                                field="state_dict")
    out = {}
    for key, value in state.items():
        key = str(key)
        for prefix in ("net.", "module."):
            if key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    return out


def _vit_names(model_keys: Optional[set]) -> Dict[str, Any]:
    if model_keys is not None and "backbone.layers.0.layernorm_before.weight" not in model_keys \
            and "backbone.encoder.layer.0.layernorm_before.weight" in model_keys:
        return _VIT_NAMES_4
    return _VIT_NAMES_5


def map_authors_key(key: str, names: Optional[Dict[str, Any]] = None) -> Optional[Any]:
    """Our key for one of the authors' keys: a string, a 3-tuple of (q, k, v) keys for a fused ``qkv``, or None
    for a key that is dropped (:data:`DROPPED`). Raises :class:`MatSegFormatError` for an unknown key."""
    names = names or _VIT_NAMES_5
    if any(p.match(key) for p in DROPPED):
        return None
    simple = {"dino_model.cls_token": "backbone.embeddings.cls_token",
              "dino_model.pos_embed": "backbone.embeddings.position_embeddings"}
    if key in simple:
        return simple[key]
    m = re.match(r"dino_model\.patch_embed\.proj\.(weight|bias)$", key)
    if m:
        return f"backbone.embeddings.patch_embeddings.projection.{m.group(1)}"
    m = re.match(r"dino_model\.norm\.(weight|bias)$", key)
    if m:
        return f"backbone.layernorm.{m.group(1)}"
    m = re.match(r"dino_model\.blocks\.(\d+)\.(norm1|norm2|attn\.proj|attn\.qkv|mlp\.fc1|mlp\.fc2)\.(weight|bias)$", key)
    if m:
        layer, part, kind = m.groups()
        base = f"backbone.{names['layer']}.{layer}."
        if part == "attn.qkv":
            return tuple(f"{base}{n}.{kind}" for n in names["qkv"])
        return f"{base}{names[part]}.{kind}"
    m = re.match(r"spatial_transform_([1-4])\.(0\.project\.0|2)\.(weight|bias)$", key)
    if m:
        part = "readout_projection" if m.group(2) != "2" else "projection"
        return f"reassemble.{int(m.group(1)) - 1}.{part}.{m.group(3)}"
    m = re.match(r"cross_attention_([1-4])\.(.+)\.(weight|bias)$", key)
    if m and m.group(2) in _CROSS_PARTS:
        return f"cross_attention.{int(m.group(1)) - 1}.{_CROSS_PARTS[m.group(2)]}.{m.group(3)}"
    m = re.match(r"fusion_([1-4])\.resConfUnit([12])\.conv([12])\.(weight|bias)$", key)
    if m:
        return f"fusion.{int(m.group(1)) - 1}.residual_layer{m.group(2)}.convolution{m.group(3)}.{m.group(4)}"
    m = re.match(r"fusion_([1-4])\.out_conv\.(weight|bias)$", key)
    if m:
        return f"fusion.{int(m.group(1)) - 1}.projection.{m.group(2)}"
    m = re.match(r"out_conv\.([0246])\.(weight|bias)$", key)
    if m:
        return f"head.layers.{int(m.group(1)) // 2}.{m.group(2)}"
    raise MatSegFormatError("unknown key in a Materialistic (Transformer) state dict", field=key)


def authors_config(state_dict: Mapping[str, Any], *, vit_num_attention_heads: Optional[int] = None,
                   num_attention_heads: int = 16, backbone_out_indices: Tuple[int, ...] = (3, 6, 9, 12),
                   **config_kwargs: Any):
    """The :class:`MaterialisticConfig` for an authors' state dict (widths read from the tensors' shapes).

    Not in the tensors, hence arguments: the ViT's heads (default ``hidden // 64``, DINO's), the cross-attention
    heads (the authors': 16) and the hooked blocks (the authors': 3, 6, 9, 12).
    """
    from .configuration import MaterialisticConfig, dino_vit_config

    sd = strip_prefixes(state_dict)
    required = ["dino_model.pos_embed", "dino_model.patch_embed.proj.weight", "dino_model.blocks.0.mlp.fc1.weight",
                "spatial_transform_1.2.weight", "cross_attention_1.query.weight", "out_conv.0.weight",
                "out_conv.2.weight", "out_conv.4.weight"]
    for key in required:
        if key not in sd:
            raise MatSegFormatError("not a Materialistic (Transformer) state dict: a key is missing", field=key)
    pos = sd["dino_model.pos_embed"]
    patch = int(sd["dino_model.patch_embed.proj.weight"].shape[-1])
    hidden = int(pos.shape[-1])
    side = math.isqrt(int(pos.shape[1]) - 1)
    if side * side != int(pos.shape[1]) - 1:
        raise MatSegFormatError(f"pos_embed of {pos.shape[1] - 1} patches is not a square grid", field="dino_model.pos_embed")
    layers = {int(m.group(1)) for k in sd for m in [re.match(r"dino_model\.blocks\.(\d+)\.", k)] if m}
    heads = vit_num_attention_heads or max(1, hidden // 64)
    vit = dino_vit_config("base", patch_size=patch, hidden_size=hidden, num_hidden_layers=max(layers) + 1,
                          num_attention_heads=heads, image_size=side * patch,
                          intermediate_size=int(sd["dino_model.blocks.0.mlp.fc1.weight"].shape[0]))
    return MaterialisticConfig(
        backbone_config=vit, backbone_out_indices=backbone_out_indices,
        reassemble_hidden_size=int(sd["spatial_transform_1.2.weight"].shape[0]),
        fusion_hidden_size=int(sd["cross_attention_1.query.weight"].shape[0]), num_attention_heads=num_attention_heads,
        head_hidden_sizes=[int(sd[f"out_conv.{i}.weight"].shape[0]) for i in (0, 2, 4)], **config_kwargs)


def convert_state_dict(state_dict: Mapping[str, Any], model_keys: Optional[set] = None
                       ) -> Tuple[Dict[str, Any], List[str]]:
    """Authors' state dict -> (our state dict, the authors' keys dropped as unused). ``qkv`` tensors are split."""
    names = _vit_names(model_keys)
    out: Dict[str, Any] = {}
    dropped: List[str] = []
    for key, value in strip_prefixes(state_dict).items():
        new = map_authors_key(key, names)
        if new is None:
            dropped.append(key)
        elif isinstance(new, tuple):
            for name, part in zip(new, value.chunk(3, dim=0)):
                out[name] = part.contiguous()
        else:
            out[new] = value
    return out, sorted(dropped)


def convert_authors_state_dict(state_dict: Mapping[str, Any], **config_kwargs: Any):
    """A :class:`MaterialisticModel` (eval mode) holding the weights of an authors' state dict.

    ``config_kwargs`` go to :func:`authors_config`. Raises :class:`MatSegFormatError` when a key is unknown, missing
    or of the wrong shape. The dropped keys are logged (and stored as ``model.conversion_dropped_keys``).
    """
    from .modeling import MaterialisticModel

    config = authors_config(state_dict, **config_kwargs)
    model = MaterialisticModel(config)
    target = model.state_dict()
    converted, dropped = convert_state_dict(state_dict, set(target))
    missing = sorted(set(target) - set(converted))
    unexpected = sorted(set(converted) - set(target))
    if missing or unexpected:
        raise MatSegFormatError(f"state dict does not fit the inferred model: missing {missing[:5]}, unexpected "
                                f"{unexpected[:5]}", field=(missing or unexpected)[0])
    for key, value in converted.items():
        if tuple(value.shape) != tuple(target[key].shape):
            raise MatSegFormatError(f"shape {tuple(value.shape)} != expected {tuple(target[key].shape)}", field=key)
    model.load_state_dict(converted, strict=True)
    if dropped:
        logger.info("dropped %d unused keys of the authors' checkpoint: %s", len(dropped), dropped)
    model.conversion_dropped_keys = dropped
    return model.eval()


def _find_checkpoint(path: Path) -> Path:
    if path.is_file():
        return path
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.suffix == ".ckpt" or p.name.endswith("model.pth"))
        if len(found) == 1:
            return found[0]
        raise MatSegInputError(f"{path} holds {len(found)} checkpoints (*.ckpt / model.pth); give the file itself")
    raise MatSegInputError(f"checkpoint not found: {path}")


def load_authors_checkpoint(path: str | Path, *, allow_pickle: bool = False) -> Dict[str, Any]:
    """Read the authors' checkpoint (file or folder) with ``torch.load``: ``weights_only=True`` unless
    ``allow_pickle`` (only for a file you trust: unpickling runs code)."""
    import torch

    file = _find_checkpoint(Path(path))
    try:
        data = torch.load(str(file), map_location="cpu", weights_only=not allow_pickle)
    except Exception as exc:  # torch raises several types for a bad or pickled file
        hint = "" if allow_pickle else " (a trusted Lightning file with pickled objects: pass --allow-pickle)"
        raise MatSegFormatError(f"cannot read the checkpoint with torch.load: {str(exc).splitlines()[0]}{hint}",
                                path=file) from None
    if not isinstance(data, Mapping):
        raise MatSegFormatError("expected a state dict or a Lightning checkpoint", path=file)
    return strip_prefixes(data)


_CARD = """---
library_name: transformers
tags: [materialistic, material-selection, matseg-hub]
license: other
---
# Materialistic (DINO ViT-B/8), converted

Materialistic (Sharma, Philip, Gharbi, Freeman, Durand, Deschaintre; SIGGRAPH 2023, "Materialistic: Selecting
Similar Materials in Images") converted from the authors' checkpoint `{name}` ({url}) with
`python -m matseg_hub.models.materialistic.convert`. Load with `matseg_hub.models.materialistic.MaterialisticModel`
or score with `matseg evaluate --model materialistic:FOLDER`. The weights are the authors'; their repository states
no licence: ask them before redistributing.
"""


def convert_checkpoint(checkpoint: str | Path, output_dir: str | Path, *, allow_pickle: bool = False,
                       push_to_hub: Optional[str] = None, private: bool = False,
                       **config_kwargs: Any) -> Dict[str, Any]:
    """Convert the authors' checkpoint and save the model folder (``config.json``, ``model.safetensors``,
    ``README.md``) into ``output_dir`` (a new or empty folder, or an earlier output of this converter).

    Returns ``{"output_dir", "dropped", "repo_id"}``.
    """
    from ...utils.files import atomic_write_text, claimed_output_folder

    state = load_authors_checkpoint(checkpoint, allow_pickle=allow_pickle)
    try:
        model = convert_authors_state_dict(state, **config_kwargs)
    except MatSegFormatError as exc:
        raise MatSegFormatError(str(exc), path=checkpoint, field=exc.field) from None
    with claimed_output_folder(output_dir, "convert materialistic", sources=[checkpoint]) as folder:
        model.save_pretrained(folder)
        atomic_write_text(Path(folder) / "README.md", _CARD.format(name=Path(checkpoint).name, url=AUTHORS_URL))
    if push_to_hub:
        from huggingface_hub import create_repo, upload_folder

        create_repo(push_to_hub, repo_type="model", private=private, exist_ok=True)
        upload_folder(folder_path=str(output_dir), repo_id=push_to_hub, repo_type="model",
                      commit_message="Convert the authors' Materialistic checkpoint")
    return {"output_dir": str(output_dir), "dropped": model.conversion_dropped_keys, "repo_id": push_to_hub}


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m matseg_hub.models.materialistic.convert",
                                     description="Convert the authors' Materialistic checkpoint (Lightning .ckpt or "
                                                 "model.pth) to a transformers MaterialisticModel folder.")
    parser.add_argument("checkpoint", help="the authors' .ckpt / model.pth, or the folder holding it")
    parser.add_argument("--output", required=True, help="folder to write (config.json, model.safetensors, README.md)")
    parser.add_argument("--allow-pickle", action="store_true",
                        help="read a trusted checkpoint that holds pickled objects (torch.load weights_only=False)")
    parser.add_argument("--image-size", type=int, default=512, help="input shortest edge (default 512, the authors')")
    parser.add_argument("--vit-num-heads", type=int, default=None,
                        help="attention heads of the DINO ViT (not stored in the weights; default hidden size / 64: 12 "
                             "for ViT-B)")
    parser.add_argument("--backbone-out-indices", type=int, nargs=4, default=[3, 6, 9, 12], metavar="I",
                        help="the ViT hidden states feeding the decoder (not stored in the weights; default 3 6 9 12, "
                             "the authors' hooked blocks)")
    parser.add_argument("--num-heads", type=int, default=16,
                        help="heads of the sigmoid cross-attention (not stored in the weights; default 16, the authors')")
    parser.add_argument("--push-to-hub", metavar="REPO_ID", help="also push to this Hub model repository")
    parser.add_argument("--private", action="store_true", help="create the Hub repository as private")
    args = parser.parse_args(argv)
    import logging

    from ...errors import MatSegError
    from ...utils.logging import set_verbosity

    set_verbosity(logging.INFO)
    try:
        result = convert_checkpoint(args.checkpoint, args.output, allow_pickle=args.allow_pickle,
                                    push_to_hub=args.push_to_hub, private=args.private, image_size=args.image_size,
                                    vit_num_attention_heads=args.vit_num_heads, num_attention_heads=args.num_heads,
                                    backbone_out_indices=tuple(args.backbone_out_indices))
    except MatSegError as exc:
        print(f"convert: error: {exc}", file=sys.stderr)
        return 1
    print(f"saved {result['output_dir']} ({len(result['dropped'])} unused keys dropped)"
          + (f", pushed to {result['repo_id']}" if result["repo_id"] else ""))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
