"""PBR/SVBRDF materials from textures, mixing, and the authors' folder layout (MatSeg paper §3.2.2).

:func:`texture_to_pbr` turns an RGB texture into a material the way the authors' ``Turn_Texture_To_PBR.py``
does (same recipe and probabilities, drawn from an explicit ``numpy.random.Generator``):

* augmentation (optional): hue rotation (p 0.22), 90° rotation, horizontal and vertical flips (p 0.5 each);
  the albedo is the augmented texture, hue-rotated once more with p 0.2;
* roughness, metallic, height (and, with p 0.13, transmission) each: a uniform value with p 0.14 (height 0; else
  a random level, white or black), otherwise a map from a random source — the texture's mean (p 0.2, 0.4 for
  height), one of its HSV or relative-RGB channels (p 0.44), or a channel of a hue-rotated copy — inverted
  (p 0.6 roughness, 0.3 others), blurred (p 0.11), then used raw (p 0.2) or rescaled into a random
  ``[low, high]`` window (height: the full range) with values under ``low`` cut to 0 (p 0.11, always for height);
* reflective spots (p 0.14: metallic > 160/255 -> 1, roughness there 0 with p 0.66), dull spots (p 0.1);
* the normal map from the height gradients: ``n ∝ (-k dh/dx, -k dh/dy, 1)`` with a random strength ``k``
  (``16 u1 u2`` p 0.76, else ``24 u1 u2`` p 0.77, else 1), unit length; stored as ``(n + 1) / 2 * 255`` in RGB
  (x along columns, y along rows, z out of the surface, as the authors write them).

:func:`mix_materials` blends materials per material (one weight per material), per property (one weight per
material and map) or by maximum, like ``Mix_PBRS.py``; normals are renormalised after blending.

Where this differs from the authors' code, and why:

* maps are computed in float32 and quantised once when written; the reference's ``mp.max() + 1`` on an 8-bit
  channel whose maximum is 255 wraps to 0 under numpy 2 (division by zero), here it is 256 as intended;
* ``augment=False`` also skips the albedo recolouring; transmission (the reference's never-generated optional
  ``Opacity``) is generated with the same recipe with p 0.13, else 0;
* mixes blend unit normal vectors and renormalise them (the reference averages the 8-bit encodings); the
  reference mixes a random number (>= 2) of materials, :func:`~matseg_hub.materials.pbr_generation.material_for_item`
  mixes two, as the paper says.

Folder layout (read and written): ``OriginColor.jpg`` (albedo), ``Roughness.jpg``, ``Metallic.jpg``,
``Height.jpg``, ``Normal.jpg``, optional ``Transmission.jpg`` and ``AmbientColor.jpg``, ``material.json``
(metadata: seed, source, licence, recipe) and ``Finished.txt`` written last. Maps missing from a folder take
documented defaults (:data:`MAP_DEFAULTS`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np

from ..errors import MatSegFormatError, MatSegInputError
from ..utils.images import IMAGE_EXTENSIONS, swap_rb
from ..utils.logging import get_logger

logger = get_logger(__name__)

PathLike = Union[str, os.PathLike]

MAP_FILES = {"albedo": "OriginColor", "roughness": "Roughness", "metallic": "Metallic", "height": "Height",
             "normal": "Normal", "transmission": "Transmission", "ambient_color": "AmbientColor"}
SCALAR_MAPS = ("roughness", "metallic", "height", "transmission")
#: values used for maps a PBR folder does not have (documented in :func:`read_pbr_folder`)
MAP_DEFAULTS = {"roughness": 0.5, "metallic": 0.0, "height": 0.0, "transmission": 0.0}
FINISHED = "Finished.txt"
METADATA_FILE = "material.json"
_MAP_EXTENSIONS = IMAGE_EXTENSIONS + (".exr",)


@dataclass
class PBRMaterial:
    """A PBR/SVBRDF material.

    Attributes:
        albedo: uint8 [H, W, 3] RGB base colour.
        roughness, metallic, height, transmission: float32 [H, W] in [0, 1].
        normal: float32 [H, W, 3] unit vectors (x along columns, y along rows, z out of the surface).
        ambient_color: optional uint8 [H, W, 3] RGB (some scanned materials have one).
        metadata: JSON-able dict: ``seed``, ``source`` (texture or materials it came from), ``license``, ``recipe``.
    """

    albedo: np.ndarray
    roughness: np.ndarray
    metallic: np.ndarray
    height: np.ndarray
    normal: np.ndarray
    transmission: np.ndarray
    ambient_color: Optional[np.ndarray] = None
    metadata: Dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self):
        return self.albedo.shape[:2]

    def validate(self) -> "PBRMaterial":
        """Check shapes, dtypes and ranges; raise :class:`MatSegInputError` naming the map."""
        h, w = self.shape
        if self.albedo.dtype != np.uint8 or self.albedo.shape != (h, w, 3):
            raise MatSegInputError(f"albedo must be uint8 [H, W, 3], got {self.albedo.dtype} {self.albedo.shape}")
        for name in SCALAR_MAPS:
            m = getattr(self, name)
            if m.shape != (h, w) or m.dtype != np.float32:
                raise MatSegInputError(f"{name} must be float32 [{h}, {w}], got {m.dtype} {m.shape}")
            if m.size and (float(m.min()) < 0 or float(m.max()) > 1):
                raise MatSegInputError(f"{name} must lie in [0, 1]")
        if self.normal.shape != (h, w, 3) or self.normal.dtype != np.float32:
            raise MatSegInputError(f"normal must be float32 [{h}, {w}, 3], got {self.normal.dtype} {self.normal.shape}")
        return self


# ------------------------------------------------------------------------------------------------------------
# maps
# ------------------------------------------------------------------------------------------------------------
def _rotate_hue(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Shift the hue of a uint8 RGB image by a random amount (OpenCV 8-bit HSV, hue wraps at 255 like the authors)."""
    import cv2

    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
    hsv[:, :, 0] = ((hsv[:, :, 0].astype(np.float32) + rng.integers(0, 255)) % 255).astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def normal_from_height(height: np.ndarray, strength: float = 1.0) -> np.ndarray:
    """Unit normals from a height map: ``n ∝ (-strength dh/dx, -strength dh/dy, 1)`` (``np.gradient``; x along
    columns, y along rows, as the authors' generator writes them).

    Args:
        height: float [H, W] in [0, 1].
    Returns:
        float32 [H, W, 3], unit length.
    """
    h = np.asarray(height, dtype=np.float64)
    if h.shape[0] < 2 or h.shape[1] < 2:
        n = np.zeros(h.shape + (3,), np.float32)
        n[..., 2] = 1
        return n
    d_rows, d_cols = np.gradient(h)
    n = np.stack([-d_cols * strength, -d_rows * strength, np.ones_like(h)], axis=-1)
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    return n.astype(np.float32)


def encode_normal(normal: np.ndarray) -> np.ndarray:
    """float [H, W, 3] unit vectors -> uint8 RGB ``round((n + 1) / 2 * 255)``."""
    return np.clip(np.rint((np.asarray(normal, np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def decode_normal(rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB normal map -> float32 [H, W, 3] unit vectors (renormalised; zero vectors become +z)."""
    n = np.asarray(rgb, np.float32) / 127.5 - 1.0
    norm = np.linalg.norm(n, axis=-1, keepdims=True)
    flat = norm[..., 0] < 1e-6
    n = n / np.maximum(norm, 1e-6)
    n[flat] = (0.0, 0.0, 1.0)
    return n.astype(np.float32)


def _source_channels(image: np.ndarray) -> np.ndarray:
    """The authors' property maps of a texture: HSV (3) and relative RGB ``c / (mean + 10)`` (3), float32 [H, W, 6]."""
    import cv2

    # the reference feeds cv2's BGR image to COLOR_RGB2HSV and divides BGR channels: use the same channel order
    bgr = swap_rb(image)
    hsv = cv2.cvtColor(bgr, cv2.COLOR_RGB2HSV).astype(np.float32)
    rel = bgr.astype(np.float32) / (bgr.mean(2, keepdims=True, dtype=np.float32) + 10.0)
    return np.concatenate([hsv, rel], axis=2)


def _property_map(key: str, image: np.ndarray, channels: np.ndarray, rng: np.random.Generator,
                  recipe: Dict[str, Any]) -> np.ndarray:
    """One scalar map (float32 [H, W] in [0, 1]) following the authors' recipe; the choices go into ``recipe``."""
    import cv2

    shape = image.shape[:2]
    if rng.random() < 0.14:  # uniform value
        if key == "height":
            value = 0
        elif rng.random() < 0.5:
            value = int(rng.integers(0, 256))
        elif rng.random() < 0.5:
            value = 255
        else:
            value = 0
        recipe[key] = {"uniform": value / 255.0}
        return np.full(shape, value / 255.0, np.float32)
    r = rng.random()
    if r < 0.2 or (key == "height" and r < 0.4):
        mp, src = image.mean(2, dtype=np.float32), "mean"
    elif r < 0.64:
        k = int(rng.integers(0, channels.shape[2]))
        mp, src = channels[:, :, k], ["H", "S", "V", "relB", "relG", "relR"][k]
    else:
        k = int(rng.integers(0, 3))
        mp, src = _rotate_hue(image, rng)[:, :, 2 - k].astype(np.float32), f"hue-rotated {'BGR'[k]}"
    step: Dict[str, Any] = {"source": src}
    if rng.random() < (0.6 if key == "roughness" else 0.3):
        mp = 255.0 - mp
        step["inverted"] = True
    if rng.random() < 0.11:
        ks = 3 + int(rng.integers(0, 4)) * 2
        mp = cv2.GaussianBlur(mp, (ks, ks), 0)
        step["blur"] = ks
    if rng.random() < 0.2:
        out = np.clip(np.rint(mp), 0, 255)  # used as is (the authors write it straight to an 8-bit file)
        step["raw"] = True
    else:
        low = int(rng.integers(0, 250)) if rng.random() < 0.75 else 0
        high = int(rng.integers(low, 256)) if rng.random() < 0.75 else 255
        if key == "height":
            low, high = 0, 255
        out = low + (high - low) * (mp / (float(mp.max()) + 1.0))
        if rng.random() < 0.11 or key == "height":
            out[out < low] = 0
        out = np.clip(np.floor(out), 0, 255)  # the authors' uint8 cast
        step.update(low=low / 255.0, high=high / 255.0)
    recipe[key] = step
    return (out / 255.0).astype(np.float32)


def texture_to_pbr(texture: np.ndarray, *, rng: Optional[np.random.Generator] = None, seed: Optional[int] = None,
                   augment: bool = True, transmission_probability: float = 0.13,
                   source: str = "", license: str = "unknown") -> PBRMaterial:
    """Make a PBR material from an RGB texture (see the module docstring for the recipe).

    Args:
        texture: uint8 [H, W, 3] RGB.
        rng / seed: the random source (give one; ``seed`` makes ``numpy.random.default_rng(seed)``).
        augment: apply the hue/rotation/flip augmentation of the texture and the albedo recolouring.
        transmission_probability: chance that the material gets a patterned/uniform transmission map
            (otherwise 0 everywhere).
        source, license: provenance stored in ``metadata``.

    Returns:
        :class:`PBRMaterial` of the texture's size (swapped by a 90° rotation).
    """
    texture = np.asarray(texture)
    if texture.ndim != 3 or texture.shape[2] != 3 or texture.dtype != np.uint8:
        raise MatSegInputError(f"texture_to_pbr expects a uint8 [H, W, 3] RGB texture, got {texture.dtype} "
                               f"{texture.shape}")
    if rng is None:
        if seed is None:
            raise MatSegInputError("texture_to_pbr needs an explicit rng or seed")
        rng = np.random.default_rng(seed)
    recipe: Dict[str, Any] = {}
    im = texture
    if augment:
        aug = []
        if rng.random() < 0.22:
            im = _rotate_hue(im, rng)
            aug.append("hue")
        if rng.random() < 0.5:
            im = np.rot90(im)
            aug.append("rot90")
        if rng.random() < 0.5:
            im = np.fliplr(im)
            aug.append("fliplr")
        if rng.random() < 0.5:
            im = np.flipud(im)
            aug.append("flipud")
        im = np.ascontiguousarray(im)
        recipe["augment"] = aug
    channels = _source_channels(im)
    albedo = im
    if augment and rng.random() < 0.2:
        albedo = _rotate_hue(im, rng)
        recipe["albedo_hue"] = True
    maps = {key: _property_map(key, im, channels, rng, recipe) for key in ("height", "roughness", "metallic")}
    if rng.random() < transmission_probability:
        maps["transmission"] = _property_map("transmission", im, channels, rng, recipe)
    else:
        maps["transmission"] = np.zeros(im.shape[:2], np.float32)
    thr = thr_low = 160 / 255.0
    if rng.random() < 0.14:  # reflective spots
        spot = maps["metallic"] > thr
        maps["metallic"][spot] = 1.0
        if rng.random() < 0.66:
            maps["roughness"][spot] = 0.0
        recipe["reflective_spots"] = True
    if rng.random() < 0.1:  # dull spots
        maps["metallic"][maps["metallic"] < thr_low] = 0.0
        if rng.random() < 0.66:
            maps["roughness"][maps["metallic"] > thr] = 1.0
        recipe["dull_spots"] = True
    u = rng.random()
    if u < 0.76:
        strength = 16 * rng.random() * rng.random()
    elif rng.random() < 0.77:
        strength = 24 * rng.random() * rng.random()
    else:
        strength = 1.0
    recipe["normal_strength"] = float(strength)
    normal = normal_from_height(maps["height"], strength)
    meta = {"seed": None if seed is None else int(seed), "source": source, "license": license, "recipe": recipe}
    return PBRMaterial(albedo=np.ascontiguousarray(albedo), roughness=maps["roughness"], metallic=maps["metallic"],
                       height=maps["height"], normal=normal, transmission=maps["transmission"], metadata=meta)


# ------------------------------------------------------------------------------------------------------------
# mixing
# ------------------------------------------------------------------------------------------------------------
MIX_MODES = ("material", "property", "max")


def _resize(a: np.ndarray, shape) -> np.ndarray:
    import cv2

    if a.shape[:2] == tuple(shape):
        return a
    return cv2.resize(a, (int(shape[1]), int(shape[0])), interpolation=cv2.INTER_LINEAR)


def mix_materials(materials: Sequence[PBRMaterial], *, rng: Optional[np.random.Generator] = None,
                  seed: Optional[int] = None, mode: Optional[str] = None,
                  weights: Optional[Sequence[float]] = None) -> PBRMaterial:
    """Blend two or more materials into a new one (maps resized to the first material's size).

    Args:
        materials: the materials to mix (>= 2).
        rng / seed: random source for the mode and the weights.
        mode: ``"material"`` (one random weight per material, shared by all maps), ``"property"`` (a random
            weight per material and map) or ``"max"`` (per-pixel maximum; the albedo uses the weighted mean);
            ``None`` draws one like the authors (p 0.28 / 0.45 / 0.27).
        weights: per-material weights for ``"material"`` mode instead of random ones.

    Returns:
        :class:`PBRMaterial`; normals are blended then renormalised to unit length.
    """
    if len(materials) < 2:
        raise MatSegInputError(f"mix_materials needs at least two materials, got {len(materials)}")
    if rng is None:
        if seed is None:
            raise MatSegInputError("mix_materials needs an explicit rng or seed")
        rng = np.random.default_rng(seed)
    if mode is None:
        r = rng.random()
        mode = "material" if r < 0.28 else ("max" if r < 0.55 else "property")
    if mode not in MIX_MODES:
        raise MatSegInputError(f"mode must be one of {MIX_MODES}, got {mode!r}")
    shape = materials[0].shape
    k = len(materials)
    if weights is not None:
        shared = np.asarray(weights, np.float64)
        if shared.shape != (k,) or (shared < 0).any() or shared.sum() <= 0:
            raise MatSegInputError(f"weights must be {k} non-negative numbers with a positive sum")
    else:
        shared = rng.random(k)
    used: Dict[str, List[float]] = {}

    def blend(name: str, arrays: List[np.ndarray]) -> np.ndarray:
        stack = np.stack([_resize(a, shape).astype(np.float32) for a in arrays])
        if mode == "max" and name != "albedo":
            return stack.max(0)
        w = shared if mode != "property" else rng.random(k)
        w = np.asarray(w, np.float64)
        w = w / w.sum() if w.sum() > 0 else np.full(k, 1.0 / k)
        used[name] = [float(v) for v in w]
        return np.tensordot(w.astype(np.float32), stack, axes=([0], [0]))

    albedo = np.clip(np.rint(blend("albedo", [m.albedo for m in materials])), 0, 255).astype(np.uint8)
    scalars = {n: np.clip(blend(n, [getattr(m, n) for m in materials]), 0, 1).astype(np.float32)
               for n in SCALAR_MAPS}
    normal = blend("normal", [m.normal for m in materials])
    norm = np.linalg.norm(normal, axis=-1, keepdims=True)
    normal = np.where(norm > 1e-6, normal / np.maximum(norm, 1e-6), np.array([0, 0, 1], np.float32))
    ambient = None
    if all(m.ambient_color is not None for m in materials):
        ambient = np.clip(np.rint(blend("ambient_color", [m.ambient_color for m in materials])), 0, 255
                          ).astype(np.uint8)
    licenses = sorted({str(m.metadata.get("license", "unknown")) for m in materials})
    meta = {"seed": None if seed is None else int(seed),
            "source": [m.metadata.get("source", "") for m in materials],
            "license": licenses[0] if len(licenses) == 1 else " AND ".join(licenses),
            "recipe": {"mix": mode, "weights": used}}
    return PBRMaterial(albedo=albedo, roughness=scalars["roughness"], metallic=scalars["metallic"],
                       height=scalars["height"], normal=normal.astype(np.float32),
                       transmission=scalars["transmission"], ambient_color=ambient, metadata=meta)


# ------------------------------------------------------------------------------------------------------------
# folder layout
# ------------------------------------------------------------------------------------------------------------
def material_files(material: PBRMaterial, quality: int = 95) -> Dict[str, bytes]:
    """The files of a material folder (name -> bytes), ``Finished.txt`` excluded."""
    from ..utils.images import encode_image

    def gray(a: np.ndarray) -> bytes:
        return encode_image(np.clip(np.rint(a * 255.0), 0, 255).astype(np.uint8), ".jpg", quality)

    files = {"OriginColor.jpg": encode_image(material.albedo, ".jpg", quality),
             "Roughness.jpg": gray(material.roughness), "Metallic.jpg": gray(material.metallic),
             "Height.jpg": gray(material.height),
             "Normal.jpg": encode_image(encode_normal(material.normal), ".jpg", quality)}
    if material.transmission.any():
        files["Transmission.jpg"] = gray(material.transmission)
    if material.ambient_color is not None:
        files["AmbientColor.jpg"] = encode_image(material.ambient_color, ".jpg", quality)
    files[METADATA_FILE] = json.dumps(material.metadata, indent=1, default=str).encode()
    return files


def write_pbr_folder(material: PBRMaterial, folder: PathLike, quality: int = 95) -> Path:
    """Write a material in the authors' layout, atomically: the folder appears complete, ``Finished.txt`` last.

    Maps are 8-bit JPEG (albedo/ambient RGB, scalar maps grayscale, normals ``(n + 1) / 2 * 255`` RGB);
    ``Transmission.jpg`` only when the material has some, ``AmbientColor.jpg`` only when it has one;
    ``material.json`` holds the metadata.
    """
    from ..utils.files import atomic_directory

    files = material_files(material, quality)
    with atomic_directory(folder) as tmp:
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        (tmp / FINISHED).write_text(", ".join(str(s) for s in np.atleast_1d(material.metadata.get("source", ""))))
    return Path(folder)


def _find_map(folder: Path, stem: str) -> Optional[Path]:
    for ext in _MAP_EXTENSIONS:
        for cand in (folder / (stem + ext), folder / (stem + ext.upper())):
            if cand.is_file():
                return cand
    return None


def is_pbr_folder(folder: PathLike) -> bool:
    """A folder holding at least an ``OriginColor``/``Color`` map."""
    folder = Path(folder)
    return folder.is_dir() and (_find_map(folder, "OriginColor") or _find_map(folder, "Color")) is not None


def read_pbr_folder(folder: PathLike, *, require_finished: bool = False) -> PBRMaterial:
    """Read a material folder in the authors' layout.

    Recognised maps: ``OriginColor`` (or ``Color``, the name ``Turn_Texture_To_PBR.py`` writes) — required;
    ``Roughness``, ``Metallic``, ``Height``, ``Normal``, ``Transmission`` (or ``Opacity``, inverted),
    ``AmbientColor`` — optional (``.jpg``/``.png``/...). Scalar maps are read as grayscale (8- or 16-bit) and
    scaled to [0, 1]; maps of another size are resized to the albedo's. Missing maps take :data:`MAP_DEFAULTS`
    (roughness 0.5, metallic 0, height 0, transmission 0); a missing normal map is derived from the height map
    (flat when there is none). ``material.json`` fills ``metadata`` when present; ``metadata["missing"]`` lists the
    maps that took defaults.

    Raises:
        MatSegFormatError: no albedo, an unreadable map (names the file), or ``require_finished`` and no
            ``Finished.txt``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise MatSegFormatError("not a PBR material folder", path=folder)
    if require_finished and not any((folder / n).is_file() for n in (FINISHED, "finished.txt")):
        raise MatSegFormatError("material folder is unfinished (no Finished.txt)", path=folder)
    files: Dict[str, bytes] = {}
    for stem in (*MAP_FILES.values(), "Color", "Opacity"):
        p = _find_map(folder, stem)
        if p is not None:
            files[stem] = p.read_bytes()
    meta: Dict[str, Any] = {}
    if (folder / METADATA_FILE).is_file():
        try:
            meta = json.loads((folder / METADATA_FILE).read_text())
        except ValueError as exc:
            raise MatSegFormatError(f"cannot parse the metadata ({exc})", path=folder / METADATA_FILE) from None
    meta.setdefault("source", folder.name)
    return material_from_map_bytes(files, meta, origin=str(folder))


def material_from_map_bytes(files: Dict[str, Optional[bytes]], metadata: Optional[Dict[str, Any]] = None,
                            origin: str = "<material>") -> PBRMaterial:
    """Decode a material from encoded maps keyed by their file stem (``"OriginColor"``, ``"Roughness"``, ...).

    ``None`` or absent maps take the defaults of :func:`read_pbr_folder`; ``origin`` names the material in errors.
    """
    from ..utils.images import decode_gray, decode_image

    files = {k: v for k, v in files.items() if v is not None}
    albedo_bytes = files.get("OriginColor", files.get("Color"))
    if albedo_bytes is None:
        raise MatSegFormatError("no albedo map (OriginColor)", path=origin)
    albedo = decode_image(albedo_bytes, f"{origin}/OriginColor")
    shape = albedo.shape[:2]
    missing: List[str] = []

    def scalar(stem: str) -> Optional[np.ndarray]:
        data = files.get(stem)
        if data is None:
            return None
        # the package's one grayscale rule: 8-bit / 255, 16-bit / 65535, colour -> luminance (utils.images)
        return np.clip(_resize(decode_gray(data, f"{origin}/{stem}"), shape), 0, 1).astype(np.float32)

    maps: Dict[str, np.ndarray] = {}
    for name in SCALAR_MAPS:
        m = scalar(MAP_FILES[name])
        if m is None and name == "transmission":
            opacity = scalar("Opacity")
            m = None if opacity is None else (1.0 - opacity).astype(np.float32)
        if m is None:
            missing.append(name)
            m = np.full(shape, MAP_DEFAULTS[name], np.float32)
        maps[name] = m
    if files.get("Normal") is not None:
        normal = decode_normal(_resize(decode_image(files["Normal"], f"{origin}/Normal"), shape))
    else:
        missing.append("normal")
        normal = normal_from_height(maps["height"])
    ambient = None
    if files.get("AmbientColor") is not None:
        ambient = _resize(decode_image(files["AmbientColor"], f"{origin}/AmbientColor"), shape)
    meta = dict(metadata or {})
    meta.setdefault("source", origin)
    meta.setdefault("license", "unknown")
    meta["missing"] = missing
    return PBRMaterial(albedo=albedo, roughness=maps["roughness"], metallic=maps["metallic"], height=maps["height"],
                       normal=normal, transmission=maps["transmission"], ambient_color=ambient, metadata=meta)


def list_pbr_folders(root: PathLike, *, require_finished: bool = False) -> List[Path]:
    """Material folders under ``root`` (its subfolders holding an albedo map), sorted by name."""
    root = Path(root)
    if not root.is_dir():
        raise MatSegInputError(f"{root} is not a folder of PBR materials")
    out = []
    for p in sorted(root.iterdir()):
        if p.name.startswith(".") or not is_pbr_folder(p):
            continue
        if require_finished and not any((p / n).is_file() for n in (FINISHED, "finished.txt")):
            continue
        out.append(p)
    return out


def material_preview(material: PBRMaterial, tile: int = 128) -> np.ndarray:
    """uint8 [tile, 5 * tile, 3]: albedo | normal | roughness | metallic | height."""
    from ..utils.images import image_grid as grid

    def gray(a):
        return np.clip(np.rint(a * 255), 0, 255).astype(np.uint8)

    return grid([material.albedo, encode_normal(material.normal), gray(material.roughness), gray(material.metallic),
                 gray(material.height)], tile=tile, columns=5)
