"""Licences of input files: the one place that reads a folder's licence map and names an unknown licence.

Every builder and generator records a licence per row or item (the Hub's ``license`` field); what a folder's files
are licensed under comes from an optional ``licenses.json`` or ``metadata.csv`` inside it (:func:`load_license_map`).
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Dict, Mapping, Union

from ..errors import MatSegFormatError

PathLike = Union[str, os.PathLike]
#: the licence of an item whose licence was not recorded (check the source before redistributing it)
UNKNOWN_LICENSE = "unknown"


def load_license_map(folder: PathLike) -> Dict[str, str]:
    """Licences of a folder's files, from an optional ``licenses.json`` or ``metadata.csv`` inside it.

    * ``licenses.json``: ``{"<file name or stem>": "<licence>", ...}``;
    * ``metadata.csv``: a header with a file column (``file``, ``file_name``, ``filename``, ``image``,
      ``image_id``, ``id`` or ``stem``) and a licence column (``license`` or ``licence``).

    Look-ups (:func:`license_for`) try the file name, then its stem. Files not listed are ``"unknown"``.
    """
    folder = Path(folder)
    out: Dict[str, str] = {}
    path = folder / "licenses.json"
    if path.is_file():
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise MatSegFormatError(f"cannot read the licence map ({exc})", path=path) from None
        if not isinstance(data, dict):
            raise MatSegFormatError("expected a JSON object {file: licence}", path=path)
        out.update({str(k): str(v) for k, v in data.items()})
    path = folder / "metadata.csv"
    if path.is_file():
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            cols = {c.lower(): c for c in (reader.fieldnames or [])}
            fcol = next((cols[c] for c in ("file", "file_name", "filename", "image", "image_id", "id", "stem")
                         if c in cols), None)
            lcol = next((cols[c] for c in ("license", "licence") if c in cols), None)
            if fcol is not None and lcol is not None:
                for row in reader:
                    if row.get(fcol) and row.get(lcol):
                        out.setdefault(row[fcol], row[lcol])
    return out


def license_for(name: str, licenses: Mapping[str, str], *more_keys: str) -> str:
    """The licence of file ``name`` in a :func:`load_license_map` mapping (file name, stem, then ``more_keys``)."""
    for key in (name, Path(name).stem, *more_keys):
        if key in licenses:
            return licenses[key]
    return UNKNOWN_LICENSE
