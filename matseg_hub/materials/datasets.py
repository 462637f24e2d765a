"""Hub datasets of extracted textures and PBR materials: features, rows, cards, builders and loaders.

* **textures** (``matseg-textures``): one row per texture — the JPEG, its provenance (source photo id and file,
  index, score, cell size, box) and the **licence of its source photo**.
* **PBR** (``matseg-pbr``): one row per material — its maps as stored in the authors' folder layout (JPEG bytes,
  ``None`` where the folder has no such map), name, sources, licence, seed and recipe (JSON).

Builders stream rows into size-bounded Parquet shards with :class:`~matseg_hub.hub.writer.DatasetRepoWriter`
(resumable, ``--shard i --num-shards n``). Loaders read any source — a folder of texture images / of material
folders, a built dataset folder, or a Hub dataset id — and stream records, so that the 2D scene generator can
use them as texture sources: ``for tex in iter_textures(source): tex.image``.

Licences: a texture folder may hold ``licenses.json`` (``{"<file or stem or source id>": "<licence>"}``) or
``metadata.csv`` (a file column + a ``license`` column; the texture extractor writes one). Textures not listed
inherit the licence listed for their source photo id, else ``"unknown"``. Material folders carry theirs in
``material.json`` (written by :func:`matseg_hub.materials.pbr.write_pbr_folder`), else ``licenses.json`` at the root
keyed by folder name, else ``"unknown"``.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Union

import numpy as np

from ..errors import MatSegError, MatSegFormatError, MatSegInputError
from ..hub.writer import (DatasetRepoWriter, dataset_card_yaml, is_built_dataset_folder, iter_job_items,
                          load_dataset_source, size_category)
from .pbr import METADATA_FILE, PBRMaterial, _find_map, list_pbr_folders, material_from_map_bytes, material_preview
from ..utils.images import image_grid, list_images
from ..utils.licenses import UNKNOWN_LICENSE, license_for, load_license_map
from .textures import parse_texture_file_name
from ..utils.files import files_fingerprint
from ..utils.images import decode_image
from ..utils.logging import get_logger

logger = get_logger(__name__)

PathLike = Union[str, os.PathLike]
SPLIT = "train"
PBR_MAP_COLUMNS = {"albedo": "OriginColor", "roughness": "Roughness", "metallic": "Metallic", "height": "Height",
                   "normal": "Normal", "transmission": "Transmission", "ambient_color": "AmbientColor"}

CITATION = """@inproceedings{eppel2024matseg,
  title     = {Learning Zero-Shot Material States Segmentation, by Implanting Natural Image Patterns in Synthetic Data},
  author    = {Eppel, Sagi and Li, Jolina and Drehwald, Manuel and Aspuru-Guzik, Alan},
  booktitle = {NeurIPS 2024 Datasets and Benchmarks Track},
  year      = {2024}
}"""


# ------------------------------------------------------------------------------------------------------------
# features and rows
# ------------------------------------------------------------------------------------------------------------
def texture_features():
    """:class:`datasets.Features` of the textures dataset (declared once: writing and reading)."""
    from datasets import Features, Image, Value

    return Features({
        "image": Image(),
        "file_name": Value("string"),
        "source_id": Value("string"),
        "source_file": Value("string"),
        "texture_index": Value("int32"),
        "score": Value("float32"),
        "cell_size": Value("int32"),
        "box": {"x": Value("int32"), "y": Value("int32"), "size": Value("int32")},
        "width": Value("int32"),
        "height": Value("int32"),
        "license": Value("string"),
    })


TEXTURE_FIELDS = {
    "image": "the texture (JPEG as extracted, full resolution of the source photo)",
    "file_name": "the authors' file name `<source>_<i>_Score_<4 digits>_TileSize<cell>_Texture.jpg`",
    "source_id": "id (file stem) of the natural photo it was cut from",
    "source_file": "the source photo's file name (empty when unknown)",
    "texture_index": "number of the texture within its photo (-1 when unknown)",
    "score": "lowest similarity (1 - Jensen-Shannon distance) between two cells of the square; NaN when unknown",
    "cell_size": "grid cell size in pixels used by the extractor (-1 when unknown)",
    "box": "the square in the source photo's pixels (x, y, size; -1 when unknown)",
    "width": "texture width in pixels",
    "height": "texture height in pixels",
    "license": "licence of the source photo (travels with every texture; `unknown` when not given)",
}


def pbr_features():
    """:class:`datasets.Features` of the PBR dataset. Map columns are ``None`` where a material has no such map."""
    from datasets import Features, Image, Value

    try:
        from datasets import List as _List
    except ImportError:  # datasets < 4
        from datasets import Sequence as _List
    feats: Dict[str, Any] = {"name": Value("string")}
    feats.update({col: Image() for col in PBR_MAP_COLUMNS})
    feats.update({
        "sources": _List(Value("string")),
        "is_mix": Value("bool"),
        "license": Value("string"),
        "seed": Value("int64"),
        "recipe": Value("string"),
        "albedo_width": Value("int32"),
        "albedo_height": Value("int32"),
    })
    return Features(feats)


PBR_FIELDS = {
    "name": "material folder name",
    "albedo": "base colour (`OriginColor.jpg`), RGB",
    "roughness": "roughness map (`Roughness.jpg`), grayscale 0-255 = 0-1; None: default 0.5",
    "metallic": "metallic map (`Metallic.jpg`); None: default 0",
    "height": "height map (`Height.jpg`); None: default 0 (flat)",
    "normal": "normal map (`Normal.jpg`), RGB = (n + 1) / 2 * 255, x along columns, y along rows; None: from height",
    "transmission": "transmission map (`Transmission.jpg`); None: default 0 (opaque)",
    "ambient_color": "ambient colour map (`AmbientColor.jpg`) where the material has one",
    "sources": "textures (or, for mixes, materials) it was made from",
    "is_mix": "made by mixing materials",
    "license": "licence (of its source photo(s); `unknown` when not given)",
    "seed": "generator seed (-1 when unknown)",
    "recipe": "JSON: the random choices made by the generator (map sources, thresholds, mixing weights)",
    "albedo_width": "albedo width in pixels (other maps are resized to it when read)",
    "albedo_height": "albedo height in pixels",
}


@dataclass
class TextureRecord:
    """A texture read back from a folder or a dataset.

    Attributes:
        image: uint8 [H, W, 3] RGB.
        name: file name.
        source_id, texture_index, score, cell_size: provenance (``-1``/NaN when unknown).
        license: the source photo's licence.
    """

    image: np.ndarray
    name: str
    source_id: str
    texture_index: int = -1
    score: float = float("nan")
    cell_size: int = -1
    license: str = UNKNOWN_LICENSE


def _texture_metadata(folder: Path) -> Dict[str, Dict[str, str]]:
    path = folder / "metadata.csv"
    if not path.is_file():
        return {}
    with open(path, newline="", encoding="utf-8") as fh:
        return {r["file"]: r for r in csv.DictReader(fh) if r.get("file")}


def texture_row(path: Path, metadata: Dict[str, Dict[str, str]], licenses: Dict[str, str],
                validate: bool = True) -> Dict[str, Any]:
    """One row of the textures dataset from a texture file (original bytes, not re-encoded).

    ``validate`` decodes the image so that a corrupt file fails here (:class:`MatSegFormatError` naming it).
    """
    from ..utils.images import displayed_size

    data = path.read_bytes()
    width, height = displayed_size(data, str(path))
    if validate:
        decode_image(data, str(path))
    info = parse_texture_file_name(path.name)
    meta = metadata.get(path.name, {})

    def num(key: str, default, cast):
        try:
            return cast(meta[key]) if meta.get(key) not in (None, "") else default
        except ValueError:
            return default

    source_id = meta.get("source_id") or info["source_id"]
    license = meta.get("license") or license_for(path.name, licenses, source_id)
    return {
        "image": {"bytes": data, "path": path.name},
        "file_name": path.name,
        "source_id": source_id,
        "source_file": meta.get("source_file", ""),
        "texture_index": num("index", info["index"], int),
        "score": num("score", info["score"], float),
        "cell_size": num("cell_size", info["cell_size"], int),
        "box": {"x": num("x", -1, int), "y": num("y", -1, int), "size": num("size", -1, int)},
        "width": width,
        "height": height,
        "license": license or UNKNOWN_LICENSE,
    }


def _encode_map(folder: Path, stem: str) -> Optional[Dict[str, Any]]:
    p = _find_map(folder, stem)
    return None if p is None else {"bytes": p.read_bytes(), "path": p.name}


def pbr_row(folder: Path, licenses: Dict[str, str]) -> Dict[str, Any]:
    """One row of the PBR dataset from a material folder (maps as stored; the folder is checked by decoding)."""
    from .pbr import read_pbr_folder

    material = read_pbr_folder(folder)  # validates: a missing albedo or a corrupt map fails here, naming the file
    meta = material.metadata
    row: Dict[str, Any] = {"name": folder.name}
    for col, stem in PBR_MAP_COLUMNS.items():
        row[col] = _encode_map(folder, stem if col != "albedo" or _find_map(folder, stem) else "Color")
    sources = meta.get("source", folder.name)
    sources = [str(s) for s in (sources if isinstance(sources, list) else [sources])]
    recipe = meta.get("recipe", {})
    license = meta.get("license")
    if not license or license == UNKNOWN_LICENSE:
        license = license_for(folder.name, licenses)
    row.update({
        "sources": sources,
        "is_mix": bool(isinstance(recipe, dict) and "mix" in recipe) or folder.name.startswith("Merge_"),
        "license": license,
        "seed": int(meta["seed"]) if meta.get("seed") is not None else -1,
        "recipe": json.dumps(recipe, default=str),
        "albedo_width": int(material.albedo.shape[1]),
        "albedo_height": int(material.albedo.shape[0]),
    })
    return row


def material_from_row(row: Dict[str, Any]) -> PBRMaterial:
    """A :class:`~matseg_hub.materials.pbr.PBRMaterial` from a PBR dataset row (images as ``{"bytes": ...}`` or bytes)."""
    files = {}
    for col, stem in PBR_MAP_COLUMNS.items():
        v = row.get(col)
        if isinstance(v, dict):
            v = v.get("bytes")
        files[stem] = v
    meta = {"source": list(row.get("sources") or []), "license": row.get("license") or UNKNOWN_LICENSE,
            "seed": None if row.get("seed", -1) in (None, -1) else int(row["seed"]), "name": row.get("name", "")}
    try:
        meta["recipe"] = json.loads(row.get("recipe") or "{}")
    except ValueError:
        meta["recipe"] = row.get("recipe")
    return material_from_map_bytes(files, meta, origin=str(row.get("name", "<row>")))


# ------------------------------------------------------------------------------------------------------------
# cards
# ------------------------------------------------------------------------------------------------------------
def _skipped_text(skipped: List[Dict[str, str]]) -> str:
    if not skipped:
        return ""
    lines = "\n".join(f"- `{s['key']}`: {s['reason']}" for s in skipped)
    return f"\n## Items left out when this copy was built\n\n{lines}\n"


def _license_table(counts: Dict[str, int]) -> str:
    return "\n".join(f"| {lic} | {n} |" for lic, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def texture_card(features, split_info: Dict[str, int], skipped: List[Dict[str, str]], licenses: Dict[str, int],
                 pretty_name: str = "MatSeg textures", has_preview: bool = True) -> str:
    """The textures dataset card (``README.md``)."""
    header = dataset_card_yaml(features, {SPLIT: split_info}, license="other", pretty_name=pretty_name,
                               task_categories=["image-to-image", "image-segmentation"],
                               tags=["textures", "materials", "matseg", "synthetic-data", "unsupervised"],
                               size_category=size_category(split_info["num_examples"]))
    fields = "\n".join(f"| `{k}` | {v} |" for k, v in TEXTURE_FIELDS.items())
    preview = "![Some textures of this dataset](preview.jpg)\n\n" if has_preview else ""
    return f"""{header}
# {pretty_name}

{preview}Uniform textures cut, without supervision, from natural photos by the MatSeg texture extractor
(`matseg_hub.materials.textures`): the photo is split into a grid of cells; cells whose colour and gradient histograms are
close (Jensen-Shannon) form uniform squares; textureless squares are dropped. They are the texture source of
MatSeg's synthetic scenes (paper §3.2.1) and of its PBR materials (`matseg-pbr`).

This copy has **{split_info["num_examples"]}** textures in the `{SPLIT}` split (Parquet shards, original JPEG bytes).

## Fields

| field | description |
| --- | --- |
{fields}

## Licence

Every texture keeps the licence of the photo it was cut from, in its `license` column (photos from Open Images
carry their own Creative Commons licences; `unknown` where the source folder gave none). Check the licence of
each row before redistribution. Licences in this copy:

| licence | textures |
| --- | --- |
{_license_table(licenses)}

## Usage

```python
from datasets import load_dataset

ds = load_dataset("<this repo or folder>", split="{SPLIT}", streaming=True)
row = next(iter(ds)); row["image"], row["source_id"], row["license"]

from matseg_hub.materials.datasets import iter_textures      # RGB arrays with provenance, e.g. for the 2D generator
for tex in iter_textures("<this repo or folder>"):
    tex.image, tex.source_id, tex.score, tex.license
```

Made with `matseg generate textures --input PHOTOS --output TEXTURES` and
`python builders/matseg_textures.py --input TEXTURES --output <folder>`.
{_skipped_text(skipped)}
## Citation

```bibtex
{CITATION}
```
"""


def pbr_card(features, split_info: Dict[str, int], skipped: List[Dict[str, str]], licenses: Dict[str, int],
             pretty_name: str = "MatSeg PBR materials", has_preview: bool = True) -> str:
    """The PBR dataset card (``README.md``)."""
    header = dataset_card_yaml(features, {SPLIT: split_info}, license="other", pretty_name=pretty_name,
                               task_categories=["image-to-image"],
                               tags=["pbr", "svbrdf", "materials", "textures", "matseg", "synthetic-data"],
                               size_category=size_category(split_info["num_examples"]))
    fields = "\n".join(f"| `{k}` | {v} |" for k, v in PBR_FIELDS.items())
    preview = "![Albedo, normal, roughness, metallic and height of some materials](preview.jpg)\n\n" if has_preview \
        else ""
    return f"""{header}
# {pretty_name}

{preview}PBR/SVBRDF materials made without supervision from textures of natural photos (MatSeg paper §3.2.2,
`matseg_hub.materials.pbr`): the albedo is the texture; roughness, metallic, height and transmission each come from a random
channel of it with a random threshold/scale/shift, or are uniform; the normal map is derived from the height
gradients; further materials are random mixes of two. Maps are stored as in the authors' folder layout
(`OriginColor.jpg`, `Roughness.jpg`, `Metallic.jpg`, `Height.jpg`, `Normal.jpg`, optional `Transmission.jpg`,
`AmbientColor.jpg`).

This copy has **{split_info["num_examples"]}** materials in the `{SPLIT}` split (Parquet shards, JPEG maps).

## Fields

| field | description |
| --- | --- |
{fields}

Missing maps (`None`) take these defaults when read with `matseg_hub`: roughness 0.5, metallic 0, height 0,
transmission 0, normal derived from the height (flat without one).

## Licence

Every material keeps the licence of the photo(s) its texture(s) came from, in its `license` column (`unknown`
where none was given; mixes list every licence joined by ` AND `). Licences in this copy:

| licence | materials |
| --- | --- |
{_license_table(licenses)}

## Usage

```python
from matseg_hub.materials.datasets import iter_materials
for mat in iter_materials("<this repo or folder>"):         # streams PBRMaterial objects
    mat.albedo, mat.roughness, mat.normal, mat.metadata["license"]
```

Made with `matseg generate pbr --textures TEXTURES --num N --seed S --output PBR` and
`python builders/matseg_pbr.py --input PBR --output <folder>`.
{_skipped_text(skipped)}
## Citation

```bibtex
{CITATION}
```
"""


# ------------------------------------------------------------------------------------------------------------
# builders
# ------------------------------------------------------------------------------------------------------------
def _encode_jpeg(image: np.ndarray) -> bytes:
    from ..utils.images import encode_image

    return encode_image(image, ".jpg", 90)


def build_textures_dataset(source: PathLike, output: PathLike, *, max_shard_size: Union[int, str] = "500MB",
                           skip_bad: bool = False, shard_index: int = 0, num_shards: int = 1, resume: bool = True,
                           overwrite: bool = False, pretty_name: str = "MatSeg textures",
                           row_group_size: int = 256) -> Optional[Path]:
    """Build the textures Hub dataset folder from a folder of texture images (streamed, resumable).

    Args:
        source: texture folder (e.g. the output of ``matseg generate textures`` or the authors' textures).
        output: dataset folder to create (built in ``<output>.partial``); an existing one must be empty or an
            earlier output of this builder.
        skip_bad: report and leave out unreadable files (listed in the card) instead of stopping.
        shard_index, num_shards: this job's part of a job array.
        resume: continue an interrupted build (shards whose textures and licence files changed are redone).
        overwrite: rebuild over a finished output of this builder (replacing only the files it wrote).
        row_group_size: rows buffered per Parquet row group (bounds memory; shards close between groups).

    Returns:
        the finished folder, or ``None`` while other jobs of the array still run.
    """
    source = Path(source)
    all_files = list_images(source)
    files = list(iter_job_items(all_files, shard_index, num_shards))
    metadata, licenses = _texture_metadata(source), load_license_map(source)
    features = texture_features()
    shared = [source / "metadata.csv", source / "licenses.json"]  # a licence change redoes every row
    inputs = [(p.name, files_fingerprint([p, *shared])) for p in files]
    with DatasetRepoWriter(output, features, split=SPLIT, max_shard_size=max_shard_size,
                           row_group_size=row_group_size, shard_index=shard_index, num_shards=num_shards,
                           resume=resume, kind="build textures", sources=[source], overwrite=overwrite,
                           inputs=inputs) as writer:
        writer.write_all(files, lambda p: p.name, lambda p: texture_row(p, metadata, licenses), skip_bad,
                         desc="building textures", unit="tex")
        info = writer.close_nonempty("no readable texture image; nothing to build", source)
        counts: Dict[str, int] = {}
        for p in all_files:
            lic = (metadata.get(p.name, {}).get("license")
                   or license_for(p.name, licenses, parse_texture_file_name(p.name)["source_id"]))
            counts[lic] = counts.get(lic, 0) + 1
        previews = []
        for p in all_files[:24]:
            try:
                previews.append(decode_image(p.read_bytes(), str(p)))
            except MatSegError:
                continue
        extra = {"preview.jpg": _encode_jpeg(image_grid(previews, tile=160, columns=8))} if previews else {}
        card = texture_card(features, info, writer.all_skipped(), counts, pretty_name, has_preview=bool(extra))
        return writer.finalize(card, extra_files=extra)


def build_pbr_dataset(source: PathLike, output: PathLike, *, max_shard_size: Union[int, str] = "500MB",
                      skip_bad: bool = False, require_finished: bool = False, shard_index: int = 0,
                      num_shards: int = 1, resume: bool = True, overwrite: bool = False,
                      pretty_name: str = "MatSeg PBR materials") -> Optional[Path]:
    """Build the PBR Hub dataset folder from a folder of material folders (streamed, resumable).

    Args:
        source: folder whose subfolders are materials in the authors' layout.
        require_finished: only folders holding ``Finished.txt`` (complete generator output).
        other arguments: see :func:`build_textures_dataset`.
    """
    source = Path(source)
    all_folders = list_pbr_folders(source, require_finished=require_finished)
    folders = list(iter_job_items(all_folders, shard_index, num_shards))
    licenses = load_license_map(source)
    features = pbr_features()
    inputs = [(f.name, files_fingerprint([f, source / "licenses.json"])) for f in folders]
    with DatasetRepoWriter(output, features, split=SPLIT, max_shard_size=max_shard_size, row_group_size=32,
                           shard_index=shard_index, num_shards=num_shards, resume=resume, kind="build pbr",
                           sources=[source], overwrite=overwrite, inputs=inputs) as writer:
        writer.write_all(folders, lambda f: f.name, lambda f: pbr_row(f, licenses), skip_bad,
                         desc="building PBR", unit="mat")
        info = writer.close_nonempty("no readable material folder; nothing to build", source)
        counts: Dict[str, int] = {}
        for f in all_folders:
            lic = UNKNOWN_LICENSE
            meta_path = f / METADATA_FILE
            if meta_path.is_file():
                try:
                    lic = json.loads(meta_path.read_text()).get("license") or UNKNOWN_LICENSE
                except ValueError:
                    pass
            if lic == UNKNOWN_LICENSE:
                lic = license_for(f.name, licenses)
            counts[lic] = counts.get(lic, 0) + 1
        extra = _pbr_preview(all_folders, licenses)
        card = pbr_card(features, info, writer.all_skipped(), counts, pretty_name, has_preview=bool(extra))
        return writer.finalize(card, extra_files=extra)


def _pbr_preview(folders: List[Path], licenses: Dict[str, str], count: int = 6) -> Dict[str, bytes]:
    """``{"preview.jpg": ...}`` of the first ``count`` readable materials of the whole source (whichever job or
    run wrote their rows), or ``{}``."""
    rows: List[np.ndarray] = []
    for f in folders:
        if len(rows) >= count:
            break
        try:
            rows.append(material_preview(material_from_row(pbr_row(f, licenses))))
        except MatSegFormatError:
            continue
    return {"preview.jpg": _encode_jpeg(np.concatenate(rows, axis=0))} if rows else {}


# ------------------------------------------------------------------------------------------------------------
# loaders (streaming sources for the generators)
# ------------------------------------------------------------------------------------------------------------
def _load_hub(source: PathLike, required: set, split: str, streaming: bool):
    return load_dataset_source(source, required, split=split, streaming=streaming)


def iter_textures(source: PathLike, *, split: str = SPLIT, streaming: bool = True, shard_index: int = 0,
                  num_shards: int = 1, skip_bad: bool = True) -> Iterator[TextureRecord]:
    """Stream textures as RGB arrays with provenance, from any source.

    Args:
        source: a folder of texture images (authors' names, optional ``metadata.csv``/``licenses.json``), a
            built textures dataset folder, or a Hub dataset id.
        split, streaming: for dataset sources.
        shard_index, num_shards: yield every ``num_shards``-th texture from ``shard_index`` (disjoint shards for
            parallel workers).
        skip_bad: log and skip unreadable images instead of raising.

    Yields:
        :class:`TextureRecord` (``image`` uint8 [H, W, 3] RGB).
    """
    path = Path(source)
    if path.is_dir() and not is_built_dataset_folder(path):
        metadata, licenses = _texture_metadata(path), load_license_map(path)

        def from_file(p: Path):
            row = texture_row(p, metadata, licenses, validate=False)
            return row, decode_image(row["image"]["bytes"], str(p))

        items, load, where = iter_job_items(list_images(path), shard_index, num_shards), from_file, str
    else:
        ds = _load_hub(source, {"image", "source_id", "license"}, split, streaming)
        items = iter_job_items(ds, shard_index, num_shards)
        load = lambda row: (row, decode_image(row["image"]["bytes"], f"{source}:{row.get('file_name')}"))  # noqa: E731
        where = lambda row: f"a row of {source}"  # noqa: E731
    for item in items:
        try:
            row, image = load(item)
        except MatSegFormatError as exc:
            if not skip_bad:
                raise
            logger.warning("skipping %s: %s", where(item), exc)
            continue
        yield _texture_record(row, image)


def _texture_record(row: Dict[str, Any], image: np.ndarray) -> TextureRecord:
    return TextureRecord(image=image, name=row.get("file_name") or "", source_id=row.get("source_id") or "",
                         texture_index=int(row.get("texture_index", -1)),
                         score=float("nan") if row.get("score") is None else float(row["score"]),
                         cell_size=int(row.get("cell_size", -1)), license=row.get("license") or UNKNOWN_LICENSE)


class TexturePool:
    """Random access to the textures of a source (for the PBR generator): ``len(pool)``, ``pool[i]``.

    ``source`` is a texture folder, a built textures dataset folder or a Hub dataset id (loaded, not streamed).
    ``pool[i]`` raises :class:`MatSegFormatError` for an unreadable texture; :meth:`load` returns ``None``
    instead, logs the texture once and remembers it in :attr:`bad` (``{texture name: error}``), like
    :func:`iter_textures` with ``skip_bad=True``.
    """

    def __init__(self, source: PathLike, split: str = SPLIT):
        self.source = str(source)
        path = Path(source)
        self._files: Optional[List[Path]] = None
        self._ds = None
        self._bad_index: Dict[int, str] = {}
        self.bad: Dict[str, str] = {}
        if path.is_dir() and not is_built_dataset_folder(path):
            self._files = list_images(path)
            self._metadata, self._licenses = _texture_metadata(path), load_license_map(path)
        else:
            self._ds = _load_hub(source, {"image", "source_id", "license"}, split, streaming=False)

    def __len__(self) -> int:
        return len(self._files) if self._files is not None else len(self._ds)

    def name(self, i: int) -> str:
        """The texture's file name (folders) or ``<source>[i]`` (datasets), for messages."""
        return self._files[i].name if self._files is not None else f"{self.source}[{int(i)}]"

    def __getitem__(self, i: int) -> TextureRecord:
        if self._files is not None:
            p = self._files[i]
            row = texture_row(p, self._metadata, self._licenses, validate=False)
            return _texture_record(row, decode_image(row["image"]["bytes"], str(p)))
        row = self._ds[int(i)]
        return _texture_record(row, decode_image(row["image"]["bytes"], f"{self.source}[{i}]"))

    def load(self, i: int) -> Optional[TextureRecord]:
        """``pool[i]``, or ``None`` when the texture cannot be read (logged once, recorded in :attr:`bad`)."""
        i = int(i)
        if i in self._bad_index:
            return None
        try:
            return self[i]
        except MatSegFormatError as exc:
            self._bad_index[i] = str(exc)
            self.bad[self.name(i)] = str(exc)
            logger.warning("skipping an unreadable texture: %s", exc)
            return None

    def first_usable(self) -> int:
        """The index of the first readable texture.

        Raises:
            MatSegInputError: when the source is empty or no texture of it can be read (the first errors named).
        """
        for i in range(len(self)):
            if self.load(i) is not None:
                return i
        if not len(self):
            raise MatSegInputError(f"the texture source {self.source} has no texture")
        first = "; ".join(list(self.bad.values())[:3])
        raise MatSegInputError(f"no texture of {self.source} can be read ({len(self.bad)} unreadable: {first})")


def iter_materials(source: PathLike, *, split: str = SPLIT, streaming: bool = True, shard_index: int = 0,
                   num_shards: int = 1, require_finished: bool = False, skip_bad: bool = True
                   ) -> Iterator[PBRMaterial]:
    """Stream PBR materials from a folder of material folders, a built PBR dataset folder or a Hub dataset id.

    Yields:
        :class:`~matseg_hub.materials.pbr.PBRMaterial` (``metadata["name"]`` = folder / row name).
    """
    from .pbr import read_pbr_folder

    path = Path(source)
    if path.is_dir() and not is_built_dataset_folder(path):
        licenses = load_license_map(path)
        for f in iter_job_items(list_pbr_folders(path, require_finished=require_finished), shard_index, num_shards):
            try:
                mat = read_pbr_folder(f)
            except MatSegFormatError as exc:
                if not skip_bad:
                    raise
                logger.warning("skipping %s: %s", f, exc)
                continue
            mat.metadata["name"] = f.name
            if mat.metadata.get("license", UNKNOWN_LICENSE) == UNKNOWN_LICENSE:
                mat.metadata["license"] = license_for(f.name, licenses)
            yield mat
        return
    ds = _load_hub(source, {"name", "albedo", "license"}, split, streaming)
    for row in iter_job_items(ds, shard_index, num_shards):
        try:
            yield material_from_row(row)
        except MatSegFormatError as exc:
            if not skip_bad:
                raise
            logger.warning("skipping a row of %s: %s", source, exc)


__all__ = ["texture_features", "pbr_features", "texture_row", "pbr_row", "material_from_row", "texture_card",
           "pbr_card", "build_textures_dataset", "build_pbr_dataset", "iter_textures", "iter_materials",
           "TexturePool", "TextureRecord"]
