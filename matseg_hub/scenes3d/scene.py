"""3D scenes as plain data (MatSeg paper §3 and appendix B, SPEC §4 "3D scenes").

The scene model is plain Python: no ``bpy`` import anywhere in this module. A :class:`Scene3D` holds everything
the renderer needs — objects and their material layout, PBR materials, environment, ground, occluders, camera
and render settings — and serialises to JSON, so a scene can be inspected without Blender and re-rendered
exactly (``Scene3D.from_json(scene.to_json()) == scene``).

Material layout (how 2–5 materials share one surface): material 0 is the base; pattern ``j`` (a pattern map from
a natural image, :mod:`matseg_hub.synthetic.patterns`, reproducible from its recorded :class:`~matseg_hub.synthetic.patterns.
PatternParams`) lays material ``j + 1`` over the materials before it. With ``p_j`` the soft pattern value at a
surface point, the weight of material ``k`` is::

    w_0 = prod_{j >= 0} (1 - p_j)          w_k = p_{k-1} * prod_{j >= k} (1 - p_j)   (k >= 1)

so the weights sum to 1 everywhere, and the soft mask of material ``k`` is ``w_k`` at the visible surface
point of each pixel (the renderer writes it as an AOV pass in the same render as the RGB).

:func:`sample_scene` draws a scene deterministically from :func:`scene_rng` ``(seed, index, attempt)`` (the
``"scene3d"`` stream of :mod:`matseg_hub.utils.seeds`: never the numbers of a 2D scene of the same seed and index);
a scene has 1–6 annotated objects and 1–8 unannotated ones (the ranges of the authors' ``main.py``);
:class:`SceneAssets` lists what it draws from (natural images for patterns, textures, PBR folders, HDRIs,
glTF objects), with :func:`default_assets` built from scikit-image's bundled photos so that it runs with no data.

Example::

    scene = sample_scene(seed=0, index=3)
    text = scene.to_json()                       # inspect, store, re-render later
    assert Scene3D.from_json(text) == scene
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import typing
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import MatSegFormatError, MatSegInputError
from ..utils.builtin_photos import SKIMAGE_LICENSES, SKIMAGE_PHOTOS, SKIMAGE_PREFIX
from ..utils.images import IMAGE_EXTENSIONS

PathLike = Union[str, os.PathLike]

SCENE_VERSION = 1  # the JSON format (a scene file of this version renders the same whatever sampled it)
GENERATOR = "matseg_hub.scene3d"
# what sample_scene draws for a (seed, index, attempt): 2: seeds carry the stream's id word, 1-6 objects and 1-8
# occluders, pattern maps that reach their occupancy
GENERATOR_VERSION = 2
#: meshes the renderer builds itself (Blender primitives; any of them can be subdivided and displaced)
PRIMITIVES: Tuple[str, ...] = ("sphere", "icosphere", "cube", "cylinder", "cone", "torus", "monkey")
#: texture coordinates a pattern map or a material texture can be projected with
COORDINATES: Tuple[str, ...] = ("object", "generated", "uv")
MATERIAL_KINDS: Tuple[str, ...] = ("uniform", "texture", "pbr")
ENVIRONMENT_KINDS: Tuple[str, ...] = ("sky", "hdri", "image", "colour")

Vec3 = Tuple[float, float, float]


# ---------------------------------------------------------------------------------------------------------------
# The data model
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class MaterialSpec:
    """The description of one material in a scene (realised as a PBR material when the scene is rendered).

    ``kind``: ``"uniform"`` (``base_color``, ``roughness``, ``metallic``), ``"texture"`` (an RGB texture turned
    into a PBR material by :func:`matseg_hub.materials.pbr.texture_to_pbr` with ``recipe_seed`` when the scene is
    rendered) or ``"pbr"`` (a folder in the authors' layout: ``OriginColor``, ``Roughness``, ``Metallic``,
    ``Height``, ``Normal`` images). Colours are linear RGB in [0, 1]. ``scale``: texture repetitions per object
    size; ``rotation``: degrees. ``emission``: emission strength of the base colour (0 = none; flat-shaded test
    scenes use it).
    """

    name: str
    kind: str = "uniform"
    base_color: Vec3 = (0.8, 0.8, 0.8)
    roughness: float = 0.5
    metallic: float = 0.0
    path: Optional[str] = None
    recipe_seed: int = 0
    scale: float = 1.0
    rotation: float = 0.0
    normal_strength: float = 1.0
    emission: float = 0.0
    licence: str = ""


@dataclass
class PatternLayer:
    """A pattern map on a surface: ``source`` (image path or ``skimage:<name>``), ``params`` (a
    :class:`~matseg_hub.synthetic.patterns.PatternParams` as a dict: the map is ``render_pattern(image, params)``), and its
    projection: ``coordinates`` (``object``, ``generated`` or ``uv``) box-projected with ``blend``, then
    ``scale`` (repetitions per object size), ``rotation`` (XYZ degrees) and ``offset``."""

    source: str
    params: Dict[str, Any]
    coordinates: str = "object"
    scale: float = 1.0
    rotation: Vec3 = (0.0, 0.0, 0.0)
    offset: Vec3 = (0.0, 0.0, 0.0)
    blend: float = 0.2
    licence: str = ""


@dataclass
class MaterialLayout:
    """``materials[0]`` is the base; ``patterns[j]`` lays ``materials[j + 1]`` over the ones before it."""

    materials: List[MaterialSpec]
    patterns: List[PatternLayer] = field(default_factory=list)


@dataclass
class SceneObject:
    """A mesh: ``shape`` is a primitive name (:data:`PRIMITIVES`) or ``"gltf"`` with ``path``.

    ``location`` is where the centre of the bottom of the object's bounding box goes; ``size`` its longest side
    (scene units); ``rotation`` XYZ degrees; ``subdivision`` levels and ``displacement`` (fraction of ``size``,
    a cloud-noise displacement of scale ``displacement_scale`` seeded by ``noise_seed``). ``annotated`` objects get
    per-material masks; the others (occluders) are unannotated.
    """

    name: str
    shape: str
    layout: MaterialLayout
    path: Optional[str] = None
    location: Vec3 = (0.0, 0.0, 0.0)
    rotation: Vec3 = (0.0, 0.0, 0.0)
    size: float = 1.0
    subdivision: int = 0
    displacement: float = 0.0
    displacement_scale: float = 0.5
    noise_seed: int = 0
    smooth: bool = True
    annotated: bool = True
    licence: str = ""


@dataclass
class Environment:
    """World lighting: ``sky`` (Blender's physical sky with a sun at ``sun_elevation``/``sun_rotation`` degrees),
    ``hdri`` (an equirectangular ``.hdr``/``.exr`` at ``path``), ``image`` (a natural photo used as the
    environment) or ``colour``. ``strength`` scales it; ``rotation`` turns it about the vertical (degrees);
    ``sun``: strength of an extra sun lamp (0 = none) for crisp shadows."""

    kind: str = "sky"
    path: Optional[str] = None
    strength: float = 1.0
    rotation: float = 0.0
    sun_elevation: float = 45.0
    sun_rotation: float = 0.0
    colour: Vec3 = (0.8, 0.8, 0.8)
    sun: float = 0.0
    licence: str = ""


@dataclass
class Ground:
    enabled: bool = True
    material: MaterialSpec = field(default_factory=lambda: MaterialSpec(name="ground"))
    size: float = 40.0


@dataclass
class Camera:
    """A perspective camera at ``location`` looking at ``target`` (Z up), ``lens`` mm on a ``sensor_width`` mm
    sensor (horizontal fit)."""

    location: Vec3 = (0.0, -4.0, 2.0)
    target: Vec3 = (0.0, 0.0, 0.5)
    lens: float = 50.0
    sensor_width: float = 36.0


@dataclass
class RenderSettings:
    """Cycles settings: ``samples`` per pixel (adaptive down to ``adaptive_threshold``), OpenImageDenoise on the
    RGB when ``denoise`` (masks are never denoised), ``max_bounces`` light bounces, ``seed`` of the sampler."""

    width: int = 512
    height: int = 512
    samples: int = 12  # with denoising: <= 5 s per 512² scene on 2 CPU cores; raise it on GPUs
    denoise: bool = True
    max_bounces: int = 4
    adaptive_threshold: float = 0.05
    seed: int = 0
    view_transform: str = "AgX"
    pattern_resolution: int = 512


@dataclass
class Scene3D:
    """A complete 3D scene. ``seed``/``index``/``attempt`` say where it came from (:func:`sample_scene`)."""

    objects: List[SceneObject]
    camera: Camera = field(default_factory=Camera)
    environment: Environment = field(default_factory=Environment)
    ground: Ground = field(default_factory=Ground)
    occluders: List[SceneObject] = field(default_factory=list)
    render: RenderSettings = field(default_factory=RenderSettings)
    seed: int = 0
    index: int = 0
    attempt: int = 0
    version: int = SCENE_VERSION
    generator: str = GENERATOR
    generator_version: Optional[int] = None  # GENERATOR_VERSION of sample_scene (None: not made by it)

    # -- serialisation ---------------------------------------------------------------------------------------
    def to_dict(self) -> Dict[str, Any]:
        """A JSON-serialisable dict (tuples become lists); :meth:`from_dict` reverses it."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def to_json(self, indent: Optional[int] = 1) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)

    @classmethod
    def from_dict(cls, data: Dict[str, Any], path: Optional[PathLike] = None) -> "Scene3D":
        """Build and validate a scene from a dict.

        Raises:
            MatSegFormatError: a missing/unknown field or a value of the wrong type, naming the field
                (``objects[0].layout.materials[1].kind``) and ``path`` when given.
        """
        scene = _from_data(cls, data, "", path)
        scene.validate(path)
        return scene

    @classmethod
    def from_json(cls, text: str, path: Optional[PathLike] = None) -> "Scene3D":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise MatSegFormatError(f"invalid scene JSON ({exc})", path=path) from None
        return cls.from_dict(data, path)

    def save(self, path: PathLike) -> Path:
        from ..utils.files import atomic_write_text

        return atomic_write_text(path, self.to_json())

    @classmethod
    def load(cls, path: PathLike) -> "Scene3D":
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise MatSegFormatError("scene file not found", path=path) from None
        return cls.from_json(text, path)

    # -- checks ----------------------------------------------------------------------------------------------
    def validate(self, path: Optional[PathLike] = None) -> "Scene3D":
        """Check values (not only types); raise :class:`MatSegFormatError` naming the field."""

        def bad(field_name: str, message: str):
            raise MatSegFormatError(message, path=path, field=field_name)

        if self.version != SCENE_VERSION:
            bad("version", f"scene version {self.version} is not supported (expected {SCENE_VERSION})")
        if not self.objects:
            bad("objects", "a scene needs at least one object")
        if not any(o.annotated for o in self.objects):
            bad("objects", "a scene needs at least one annotated object")
        for group, objs in (("objects", self.objects), ("occluders", self.occluders)):
            for i, obj in enumerate(objs):
                where = f"{group}[{i}]"
                if obj.shape not in PRIMITIVES + ("gltf",):
                    bad(f"{where}.shape", f"unknown shape {obj.shape!r}; expected one of {PRIMITIVES + ('gltf',)}")
                if obj.shape == "gltf" and not obj.path:
                    bad(f"{where}.path", "a glTF object needs a path")
                if not obj.size > 0:
                    bad(f"{where}.size", f"size must be > 0, got {obj.size}")
                if not 0 <= obj.subdivision <= 6:
                    bad(f"{where}.subdivision", f"subdivision must be in 0..6, got {obj.subdivision}")
                mats, pats = obj.layout.materials, obj.layout.patterns
                if not 1 <= len(mats) <= 8:
                    bad(f"{where}.layout.materials", f"1 to 8 materials per object, got {len(mats)}")
                if len(pats) != len(mats) - 1:
                    bad(f"{where}.layout.patterns", f"{len(mats)} materials need {len(mats) - 1} patterns, "
                        f"got {len(pats)}")
                for k, mat in enumerate(mats):
                    _check_material(mat, f"{where}.layout.materials[{k}]", bad)
                for j, pat in enumerate(pats):
                    if pat.coordinates not in COORDINATES:
                        bad(f"{where}.layout.patterns[{j}].coordinates",
                            f"unknown coordinates {pat.coordinates!r}; expected one of {COORDINATES}")
                    for key in ("height", "width", "property", "t_lo", "t_hi"):
                        if key not in pat.params:
                            bad(f"{where}.layout.patterns[{j}].params", f"pattern parameters lack {key!r}")
        _check_material(self.ground.material, "ground.material", bad)
        env = self.environment
        if env.kind not in ENVIRONMENT_KINDS:
            bad("environment.kind", f"unknown environment {env.kind!r}; expected one of {ENVIRONMENT_KINDS}")
        if env.kind in ("hdri", "image") and not env.path:
            bad("environment.path", f"a {env.kind!r} environment needs a path")
        r = self.render
        if not (8 <= r.width <= 8192 and 8 <= r.height <= 8192):
            bad("render.width", f"resolution must be 8..8192 pixels, got {r.width}x{r.height}")
        if r.samples < 1:
            bad("render.samples", f"samples must be >= 1, got {r.samples}")
        if not self.camera.lens > 0:
            bad("camera.lens", f"lens must be > 0 mm, got {self.camera.lens}")
        if np.allclose(self.camera.location, self.camera.target):
            bad("camera.target", "the camera target equals its location")
        return self

    # -- inspection ------------------------------------------------------------------------------------------
    @property
    def annotated_objects(self) -> List[SceneObject]:
        return [o for o in self.objects if o.annotated]

    @property
    def num_materials(self) -> int:
        """Number of masks the scene has before occlusion is taken into account."""
        return sum(len(o.layout.materials) for o in self.annotated_objects)

    def material_names(self) -> List[str]:
        """``"<object>/<material>"`` for every mask, in mask order."""
        return [f"{o.name}/{m.name}" for o in self.annotated_objects for m in o.layout.materials]

    def asset_licenses(self) -> Dict[str, str]:
        """Every file or built-in asset the scene uses -> its licence (empty when unknown)."""
        out: Dict[str, str] = {}
        for obj in self.objects + self.occluders:
            if obj.path:
                out[obj.path] = obj.licence
            for mat in obj.layout.materials:
                if mat.path:
                    out[mat.path] = mat.licence
            for pat in obj.layout.patterns:
                out[pat.source] = pat.licence
        if self.ground.enabled and self.ground.material.path:
            out[self.ground.material.path] = self.ground.material.licence
        if self.environment.path:
            out[self.environment.path] = self.environment.licence
        return out


def _check_material(mat: MaterialSpec, where: str, bad) -> None:
    if mat.kind not in MATERIAL_KINDS:
        bad(f"{where}.kind", f"unknown material kind {mat.kind!r}; expected one of {MATERIAL_KINDS}")
    if mat.kind in ("texture", "pbr") and not mat.path:
        bad(f"{where}.path", f"a {mat.kind!r} material needs a path")
    if len(mat.base_color) != 3 or not all(0.0 <= c <= 1.0 for c in mat.base_color):
        bad(f"{where}.base_color", f"base_color must be 3 values in [0, 1], got {mat.base_color}")
    for name in ("roughness", "metallic"):
        v = getattr(mat, name)
        if not 0.0 <= v <= 1.0:
            bad(f"{where}.{name}", f"{name} must be in [0, 1], got {v}")


def _from_data(tp, value, where: str, path):
    """Convert JSON data to the annotated type ``tp`` (dataclasses, lists, tuples, Optional, scalars)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)

    def bad(message):
        raise MatSegFormatError(message, path=path, field=where or "<root>")

    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            bad(f"expected an object for {tp.__name__}, got {type(value).__name__}")
        hints = typing.get_type_hints(tp)
        names = {f.name for f in dataclasses.fields(tp)}
        unknown = sorted(set(value) - names)
        if unknown:
            raise MatSegFormatError(f"unknown field(s) {unknown} in {tp.__name__}", path=path,
                                    field=f"{where}.{unknown[0]}" if where else unknown[0])
        kwargs = {}
        for f in dataclasses.fields(tp):
            sub = f"{where}.{f.name}" if where else f.name
            if f.name in value:
                kwargs[f.name] = _from_data(hints[f.name], value[f.name], sub, path)
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise MatSegFormatError(f"missing required field {f.name!r}", path=path, field=sub)
        return tp(**kwargs)
    if origin is Union:  # Optional[X]
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _from_data(inner[0], value, where, path)
    if origin in (list, List):
        if not isinstance(value, list):
            bad(f"expected a list, got {type(value).__name__}")
        return [_from_data(args[0], v, f"{where}[{i}]", path) for i, v in enumerate(value)]
    if origin in (tuple, Tuple):
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            bad(f"expected a list of {len(args)} numbers, got {value!r}")
        return tuple(_from_data(a, v, f"{where}[{i}]", path) for i, (a, v) in enumerate(zip(args, value)))
    if origin in (dict, Dict):
        if not isinstance(value, dict):
            bad(f"expected an object, got {type(value).__name__}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            bad(f"expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            bad(f"expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            bad(f"expected a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            bad(f"expected a string, got {value!r}")
        return value
    if tp is Any:
        return value
    bad(f"cannot read a value of type {tp}")  # pragma: no cover


# ---------------------------------------------------------------------------------------------------------------
# Assets
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class SceneAssets:
    """What :func:`sample_scene` draws from. Paths are strings; ``skimage:<name>`` names a scikit-image photo.

    ``licenses`` maps a path (or a folder prefix) to its licence; it is recorded in every scene that uses it.
    """

    pattern_sources: List[str] = field(default_factory=list)
    textures: List[str] = field(default_factory=list)
    pbr_folders: List[str] = field(default_factory=list)
    hdris: List[str] = field(default_factory=list)
    environment_images: List[str] = field(default_factory=list)
    objects: List[str] = field(default_factory=list)
    licenses: Dict[str, str] = field(default_factory=dict)

    def license_of(self, path: str) -> str:
        if path.startswith(SKIMAGE_PREFIX):
            return "scikit-image sample data: " + SKIMAGE_LICENSES.get(path[len(SKIMAGE_PREFIX):], "unknown")
        best = ""
        for key, lic in self.licenses.items():
            if path == key or path.startswith(key.rstrip("/") + "/"):
                if len(key) > len(best):
                    best = key
        return self.licenses.get(best, "") if best else ""

    def __post_init__(self):
        if not self.pattern_sources:
            raise MatSegInputError("SceneAssets needs at least one pattern source (natural image)")


def default_assets() -> SceneAssets:
    """Built-in assets: scikit-image's bundled photos as pattern sources and textures, primitives only,
    Blender's sky (no HDRI, no glTF). Runs with no data folder and no download."""
    photos = [SKIMAGE_PREFIX + n for n in SKIMAGE_PHOTOS]
    return SceneAssets(pattern_sources=photos, textures=photos)


def _files(folder: Optional[PathLike], exts: Sequence[str]) -> List[str]:
    if folder is None:
        return []
    folder = Path(folder)
    if not folder.is_dir():
        raise MatSegInputError(f"asset folder {folder} does not exist")
    from ..hub.writer import is_built_dataset_folder

    if is_built_dataset_folder(folder):
        raise MatSegInputError(f"asset folder {folder} is a built dataset (Parquet shards), not a folder of files: "
                               "give the folder it was built from")
    return sorted(str(p.resolve()) for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in exts
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def assets_from_folders(natural_images: Optional[PathLike] = None, textures: Optional[PathLike] = None,
                        pbr: Optional[PathLike] = None, hdri: Optional[PathLike] = None,
                        objects: Optional[PathLike] = None, environment_images: Optional[PathLike] = None,
                        licenses: Optional[Dict[str, str]] = None, builtin: bool = True) -> SceneAssets:
    """Assets from folders (any may be ``None``); the built-in photos fill in pattern sources and textures
    when ``builtin`` (always when no natural image is given).

    ``natural_images``: photos for pattern maps (and, when ``environment_images`` is not given, environments);
    ``textures``: RGB textures (turned into PBR materials); ``pbr``: folders in the authors' layout (via
    :func:`matseg_hub.materials.pbr.list_pbr_folders`); ``hdri``: ``.hdr``/``.exr``; ``objects``: ``.gltf``/``.glb``.
    """
    base = default_assets()
    nat = _files(natural_images, IMAGE_EXTENSIONS)
    tex = _files(textures, IMAGE_EXTENSIONS)
    pbr_dirs: List[str] = []
    if pbr is not None:
        from ..materials.pbr import list_pbr_folders

        pbr_dirs = [str(p.resolve()) for p in list_pbr_folders(pbr)]
    hdris = _files(hdri, (".hdr", ".exr"))
    objs = _files(objects, (".gltf", ".glb"))
    env_images = _files(environment_images, IMAGE_EXTENSIONS) if environment_images is not None else list(nat)
    return SceneAssets(
        pattern_sources=nat + (base.pattern_sources if builtin or not nat else []),
        textures=tex + (base.textures if builtin or not (tex or pbr_dirs) else []),
        pbr_folders=pbr_dirs, hdris=hdris, environment_images=env_images, objects=objs,
        licenses=dict(licenses or {}))


@lru_cache(maxsize=64)
def _load_source_cached(source: str) -> np.ndarray:
    if source.startswith(SKIMAGE_PREFIX):
        import skimage.data

        name = source[len(SKIMAGE_PREFIX):]
        if name not in SKIMAGE_PHOTOS:
            raise MatSegInputError(f"unknown built-in photo {source!r}; expected skimage:<one of {SKIMAGE_PHOTOS}>")
        image = np.asarray(getattr(skimage.data, name)())
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        image = np.ascontiguousarray(image[:, :, :3]).astype(np.uint8, copy=False)
    else:
        from ..utils.images import read_image

        image = read_image(source)
    image.setflags(write=False)
    return image


def load_source_image(source: str) -> np.ndarray:
    """A pattern/texture source as uint8 [H, W, 3] RGB (``skimage:<name>`` or an image path); cached, read-only."""
    return _load_source_cached(str(source))


def pattern_image(layer: PatternLayer) -> np.ndarray:
    """The layer's pattern map: float32 [params.height, params.width] in [0, 1], reproduced bit for bit."""
    from ..synthetic.patterns import PatternParams, render_pattern

    return render_pattern(load_source_image(layer.source), PatternParams.from_dict(layer.params))


# ---------------------------------------------------------------------------------------------------------------
# Sampling
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class Scene3DConfig:
    """Ranges :func:`sample_scene` draws from (JSON-friendly; recorded nowhere else than in the scene itself).

    ``objects``: annotated objects per scene and ``occluders``: unannotated ones (the authors' ``main.py`` loads
    1–6 main objects and 1–8 scattered ones); ``materials``: materials per annotated object, with at most
    ``max_scene_materials`` in a scene (later objects get fewer, at least one each).
    """

    width: int = 512
    height: int = 512
    samples: int = 12
    denoise: bool = True
    max_bounces: int = 4
    pattern_resolution: int = 512
    objects: Tuple[int, int] = (1, 6)
    materials: Tuple[int, int] = (2, 5)
    max_scene_materials: int = 10
    occluders: Tuple[int, int] = (1, 8)
    occluder_in_view_prob: float = 0.3  # the others stand around the objects (background, shadows)
    gltf_prob: float = 0.5
    displacement_prob: float = 0.5
    ground_prob: float = 0.85
    texture_prob: float = 0.45
    pbr_prob: float = 0.35
    hdri_prob: float = 0.7
    image_env_prob: float = 0.3
    sun_prob: float = 0.4
    primitives: Tuple[str, ...] = PRIMITIVES

    def __post_init__(self):
        lo, hi = self.materials
        if not 1 <= lo <= hi <= 8:
            raise MatSegInputError(f"materials range must satisfy 1 <= lo <= hi <= 8, got {self.materials}")
        if not 1 <= self.objects[0] <= self.objects[1]:
            raise MatSegInputError(f"objects range must satisfy 1 <= lo <= hi, got {self.objects}")
        if self.max_scene_materials < max(2, lo, self.objects[1]):
            raise MatSegInputError(f"max_scene_materials must be >= 2, the least materials of an object ({lo}) and "
                                   f"the most objects ({self.objects[1]}); got {self.max_scene_materials}")
        if not 0 <= self.occluders[0] <= self.occluders[1]:
            raise MatSegInputError(f"occluders range must satisfy 0 <= lo <= hi, got {self.occluders}")
        bad = [p for p in self.primitives if p not in PRIMITIVES]
        if bad or not self.primitives:
            raise MatSegInputError(f"unknown primitives {bad}; expected some of {PRIMITIVES}")
        if self.width < 8 or self.height < 8 or self.samples < 1:
            raise MatSegInputError(f"bad render size/samples: {self.width}x{self.height}, {self.samples} samples")


def scene_rng(seed: int, index: int, attempt: int = 0) -> np.random.Generator:
    """The generator of scene ``index`` of a run with ``seed`` (independent of worker count and order):
    ``stream_rng("scene3d", seed, index, attempt)`` (:mod:`matseg_hub.utils.seeds`)."""
    from ..utils.seeds import stream_rng

    if seed < 0 or index < 0 or attempt < 0:
        raise MatSegInputError(f"seed, index and attempt must be >= 0, got {seed}, {index}, {attempt}")
    return stream_rng("scene3d", int(seed), int(index), int(attempt))


def _pick(rng: np.random.Generator, items: Sequence[str]) -> str:
    return items[int(rng.integers(len(items)))]


def _colour(rng: np.random.Generator) -> Vec3:
    # a random colour in HSV, converted to linear RGB
    import colorsys

    h, s, v = float(rng.random()), float(rng.uniform(0, 1) ** 0.7), float(rng.uniform(0.05, 1.0))
    r, g, b = colorsys.hsv_to_rgb(h, s, v)
    return tuple(float(round(c ** 2.2, 6)) for c in (r, g, b))


def sample_material(rng: np.random.Generator, assets: SceneAssets, config: Scene3DConfig, name: str) -> MaterialSpec:
    """A random material: PBR folder, texture (made PBR at render time) or uniform colour."""
    u = float(rng.random())
    common = dict(name=name, scale=float(np.exp(rng.uniform(np.log(0.5), np.log(4.0)))),
                  rotation=float(rng.uniform(0, 360)), normal_strength=float(rng.uniform(0.3, 1.0)),
                  recipe_seed=int(rng.integers(2 ** 31)))
    if assets.pbr_folders and u < config.pbr_prob:
        path = _pick(rng, assets.pbr_folders)
        return MaterialSpec(kind="pbr", path=path, licence=assets.license_of(path), **common)
    if assets.textures and u < config.pbr_prob + config.texture_prob:
        path = _pick(rng, assets.textures)
        return MaterialSpec(kind="texture", path=path, licence=assets.license_of(path), **common)
    return MaterialSpec(kind="uniform", base_color=_colour(rng), roughness=float(rng.uniform(0.05, 1.0)),
                       metallic=float(rng.random() < 0.25) * float(rng.uniform(0.5, 1.0)), **common)


def layout_shares(coverages: Sequence[float]) -> List[float]:
    """Expected share of each material of a layout whose pattern ``j`` covers ``coverages[j]`` of its map
    (independent maps, the weights of the module docstring): ``len(coverages) + 1`` values summing to 1."""
    shares = []
    for k in range(len(coverages) + 1):
        share = 1.0 if k == 0 else float(coverages[k - 1])
        for c in coverages[k:]:
            share *= 1.0 - float(c)
        shares.append(share)
    return shares


_PATTERN_TRIES = 8


def sample_layout(rng: np.random.Generator, assets: SceneAssets, config: Scene3DConfig, num_materials: int,
                  prefix: str = "material") -> MaterialLayout:
    """``num_materials`` materials and the ``num_materials - 1`` pattern maps that lay them out.

    Pattern ``j`` gets occupancy about ``1 / (j + 2)`` so that every material ends with a similar share
    (:func:`layout_shares`); a map is redrawn while its coverage is off its occupancy by more than half of it (a
    threshold at the maximum gives an empty map, whose material would land nowhere), so every material of the
    layout keeps an expected share of at least about 5 % (5 materials).
    """
    from ..synthetic.patterns import pattern_map

    mats = [sample_material(rng, assets, config, f"{prefix}{k}") for k in range(num_materials)]
    pats = []
    res = int(config.pattern_resolution)
    for j in range(num_materials - 1):
        source = _pick(rng, assets.pattern_sources)
        image = load_source_image(source)
        occupancy = float(np.clip(rng.normal(1.0 / (j + 2), 0.08), 0.12, 0.8))
        for _ in range(_PATTERN_TRIES):
            soft, params = pattern_map(image, rng, size=(res, res), occupancy=occupancy, return_params=True)
            if abs(float(soft[::4, ::4].mean()) - occupancy) <= 0.5 * occupancy:
                break
        pats.append(PatternLayer(
            source=source, params=params.to_dict(), coordinates=_pick(rng, ("object", "object", "generated", "uv")),
            scale=float(np.exp(rng.uniform(np.log(0.4), np.log(1.5)))),
            rotation=tuple(float(v) for v in rng.uniform(0, 360, size=3)),
            offset=tuple(float(v) for v in rng.uniform(-1, 1, size=3)),
            blend=float(rng.uniform(0.05, 0.4)), licence=assets.license_of(source)))
    return MaterialLayout(materials=mats, patterns=pats)


def _single_material(rng, assets, config, name) -> MaterialLayout:
    return MaterialLayout(materials=[sample_material(rng, assets, config, name)])


def _look_direction(azimuth: float, elevation: float) -> np.ndarray:
    a, e = math.radians(azimuth), math.radians(elevation)
    return np.array([math.cos(e) * math.cos(a), math.cos(e) * math.sin(a), math.sin(e)])


def _material_counts(rng: np.random.Generator, config: Scene3DConfig, num_objects: int) -> List[int]:
    """Materials of each annotated object: drawn from ``config.materials``, at most ``max_scene_materials`` in all
    (every later object keeps at least one)."""
    counts, budget = [], int(config.max_scene_materials)
    for o in range(num_objects):
        hi = min(config.materials[1], budget - (num_objects - o - 1))
        lo = min(config.materials[0], hi)
        n = int(rng.integers(lo, hi + 1))
        counts.append(n)
        budget -= n
    return counts


def _place_objects(rng: np.random.Generator, sizes: Sequence[float]) -> List[Tuple[float, float]]:
    """Ground positions (x, y) for objects of the given sizes: the first at the origin, the others around it,
    their bounding circles apart where 20 tries allow (the authors scatter their main objects the same way)."""
    spots = [(0.0, 0.0)]
    for size in sizes[1:]:
        best, best_gap = None, -math.inf
        for _ in range(20):
            ang = float(rng.uniform(0, 2 * math.pi))
            rad = float(rng.uniform(0.4, 0.9)) * math.sqrt(len(spots)) * max(sizes)  # a loose cluster
            p = (rad * math.cos(ang), rad * math.sin(ang))
            gap = min(math.hypot(p[0] - q[0], p[1] - q[1]) - 0.5 * (size + s) for q, s in zip(spots, sizes))
            if gap > best_gap:
                best, best_gap = p, gap
            if gap >= 0:
                break
        spots.append(best)
    return spots


def _sample_object(rng: np.random.Generator, assets: SceneAssets, config: Scene3DConfig, name: str,
                   num_materials: int, size: float, xy: Tuple[float, float]) -> SceneObject:
    """One annotated object (a displaced/subdivided primitive or a glTF mesh) standing on the ground at ``xy``."""
    if assets.objects and rng.random() < config.gltf_prob:
        path = _pick(rng, assets.objects)
        shape, subdivision, displacement, licence = "gltf", 0, 0.0, assets.license_of(path)
    else:
        path, shape, licence = None, _pick(rng, config.primitives), ""
        displaced = rng.random() < config.displacement_prob
        subdivision = int(rng.integers(2, 5)) if displaced else int(rng.integers(0, 2))
        displacement = float(rng.uniform(0.03, 0.2)) if displaced else 0.0
    layout = sample_layout(rng, assets, config, num_materials)
    return SceneObject(name=name, shape=shape, path=path, layout=layout, location=(float(xy[0]), float(xy[1]), 0.0),
                       rotation=(0.0, 0.0, float(rng.uniform(0, 360))) if rng.random() < 0.6 else
                       tuple(float(v) for v in rng.uniform(0, 360, size=3)),
                       size=size, subdivision=subdivision, displacement=displacement,
                       displacement_scale=float(rng.uniform(0.15, 0.8)), noise_seed=int(rng.integers(2 ** 16)),
                       smooth=bool(rng.random() < 0.8), annotated=True, licence=licence)


def sample_scene(seed: int, index: int, assets: Optional[SceneAssets] = None, config: Optional[Scene3DConfig] = None,
                 attempt: int = 0) -> Scene3D:
    """Draw scene ``index`` of a run with ``seed``: deterministic (same arguments -> equal scenes, same JSON).

    ``config.objects`` (1–6) annotated objects (displaced/subdivided primitives or glTF meshes) standing on the
    ground around the origin, each carrying ``config.materials`` (2–5) materials laid out by pattern maps
    (:func:`sample_layout`), a ground plane (usually), ``config.occluders`` (1–8) unannotated objects (some
    placed between the camera and the objects), an environment (HDRI when given, else a natural photo or
    Blender's sky) and a camera aimed at the group. ``attempt`` re-draws a scene whose materials ended up hidden
    (the renderer asks for it).
    """
    assets = assets or default_assets()
    config = config or Scene3DConfig()
    rng = scene_rng(seed, index, attempt)

    # annotated objects: the first of size 1 at the origin, the others smaller, around it
    n_obj = int(rng.integers(config.objects[0], config.objects[1] + 1))
    sizes = [1.0] + [float(rng.uniform(0.4, 1.0)) for _ in range(n_obj - 1)]
    spots = _place_objects(rng, sizes)
    counts = _material_counts(rng, config, n_obj)
    objects = [_sample_object(rng, assets, config, f"object{o}", counts[o], sizes[o], spots[o]) for o in range(n_obj)]
    # the group's centre and radius on the ground (the camera frames it)
    centre = np.mean(np.array(spots), axis=0)
    radius = max(math.hypot(x - centre[0], y - centre[1]) + 0.5 * s for (x, y), s in zip(spots, sizes))
    size = max(1.0, 1.2 * radius)  # what the camera frames: 1 for a single object, most of the group otherwise

    # camera
    lens = float(rng.uniform(30.0, 70.0))
    azimuth = float(rng.uniform(0, 360))
    elevation = float(rng.uniform(8.0, 65.0))
    target = np.array([centre[0] + rng.normal(0, 0.08), centre[1] + rng.normal(0, 0.08),
                       float(rng.uniform(0.3, 0.6))])
    half_fov = math.atan(36.0 / 2 / lens)
    distance = size * float(rng.uniform(0.6, 1.2)) / math.tan(half_fov)
    direction = _look_direction(azimuth, elevation)
    cam_loc = target + distance * direction
    camera = Camera(location=tuple(float(v) for v in cam_loc), target=tuple(float(v) for v in target), lens=lens)

    # occluders
    occluders = []
    n_occ = int(rng.integers(config.occluders[0], config.occluders[1] + 1))
    for i in range(n_occ):
        occ_size = float(rng.uniform(0.15, 0.6))
        if rng.random() < config.occluder_in_view_prob:
            # on the ground between the camera and the objects, shifted sideways so it hides part of them
            t = float(rng.uniform(0.25, 0.6))
            p = target + t * (cam_loc - target)
            side = np.cross(direction, [0.0, 0.0, 1.0])
            side /= max(np.linalg.norm(side), 1e-9)
            p = p + side * float(rng.uniform(-0.5, 0.5)) * size
            loc = (float(p[0]), float(p[1]), 0.0)
        else:  # scattered around the group (background and shadows)
            ang = float(rng.uniform(0, 2 * math.pi))
            rad = radius + float(rng.uniform(0.4, 2.5))
            loc = (float(centre[0]) + rad * math.cos(ang), float(centre[1]) + rad * math.sin(ang), 0.0)
        occluders.append(SceneObject(
            name=f"occluder{i}", shape=_pick(rng, config.primitives),
            layout=_single_material(rng, assets, config, f"occluder{i}_material"), location=loc,
            rotation=tuple(float(v) for v in rng.uniform(0, 360, size=3)), size=occ_size,
            subdivision=int(rng.integers(0, 2)), smooth=bool(rng.random() < 0.5), annotated=False))

    # ground
    ground = Ground(enabled=bool(rng.random() < config.ground_prob),
                    material=sample_material(rng, assets, config, "ground"), size=40.0 * max(1.0, size))
    ground.material.scale *= 0.5
    # environment
    u = float(rng.random())
    env_rotation = float(rng.uniform(0, 360))
    sun = float(rng.uniform(1.0, 4.0)) if rng.random() < config.sun_prob else 0.0
    if assets.hdris and u < config.hdri_prob:
        path = _pick(rng, assets.hdris)
        environment = Environment(kind="hdri", path=path, strength=float(rng.uniform(0.6, 1.6)),
                                  rotation=env_rotation, sun=sun, licence=assets.license_of(path))
    elif assets.environment_images and u < config.hdri_prob + config.image_env_prob:
        path = _pick(rng, assets.environment_images)
        environment = Environment(kind="image", path=path, strength=float(rng.uniform(0.6, 1.6)),
                                  rotation=env_rotation, sun=sun or float(rng.uniform(1.0, 3.0)),
                                  licence=assets.license_of(path))
    else:
        environment = Environment(kind="sky", strength=float(rng.uniform(0.3, 1.0)), rotation=env_rotation,
                                  sun_elevation=float(rng.uniform(5.0, 80.0)), sun_rotation=float(rng.uniform(0, 360)),
                                  sun=sun)
    if environment.kind != "sky":  # the extra sun lamp's direction (the sky draws its own above)
        environment.sun_elevation = float(rng.uniform(15.0, 75.0))
        environment.sun_rotation = float(rng.uniform(0, 360))

    render = RenderSettings(width=int(config.width), height=int(config.height), samples=int(config.samples),
                            denoise=bool(config.denoise), max_bounces=int(config.max_bounces),
                            seed=int(rng.integers(2 ** 31)), pattern_resolution=int(config.pattern_resolution))
    scene = Scene3D(objects=objects, camera=camera, environment=environment, ground=ground, occluders=occluders,
                    render=render, seed=int(seed), index=int(index), attempt=int(attempt),
                    generator_version=GENERATOR_VERSION)
    return scene.validate()
