"""A plain float64 loop implementation of the reference triplet accuracy (the authors' ``Evaluate.py``,
``get_accuracy_pytorch``), kept deliberately naive: one full-size ``cv2.circle`` mask per point, python loops
over anchors and over ranked positions. It is the yardstick of ``matseg_hub.metrics.triplet`` (imported by
``tests/test_metric.py`` and ``bench/bench_metric.py``) and must stay independent of it.

It follows the reference step by step, in float64, and adds only what ``matseg_hub.metrics.triplet`` defines where the
reference returns NaN: all-zero pixels stay zero (``x / max(||x||, 1e-12)``, the torch ``normalize`` rule the
reference uses), a disc summing to zero gives a zero descriptor, a hard-mode anchor with no point of another
group is skipped, and an image with no scored anchor returns ``None`` values.
"""

from __future__ import annotations

import cv2
import numpy as np


def reference_point_descriptors(feature_map, points):
    """float64 [N, D]: per-pixel L2 normalisation, sum in each full-size cv2.circle mask, L2 normalisation."""
    fmap = np.asarray(feature_map).astype(np.float64)
    if fmap.ndim == 2:  # label map -> one-hot map
        labels = np.unique(fmap)
        fmap = (fmap[:, :, None] == labels[None, None, :]).astype(np.float64)
    norm = np.sqrt((fmap * fmap).sum(2))
    fmap = fmap / np.maximum(norm, 1e-12)[:, :, None]
    descs = []
    for x, y, r in np.round(np.asarray(points, dtype=np.float64)).astype(np.int64):
        mask = np.zeros(fmap.shape[:2], dtype=np.uint8)
        mask = cv2.circle(mask, (int(x), int(y)), int(r), 1, thickness=-1)
        desc = (mask[:, :, None] * fmap).sum(0).sum(0)
        length = np.sqrt((desc * desc).sum())
        descs.append(desc / length if length > 0 else desc * 0)
    return np.array(descs)


def _similarity_rows(point_groups, group_similarity, group_ids):
    """group -> {group: weight} (self 1), like the reference's ``matdic[group]['sim']``."""
    groups = list(dict.fromkeys(point_groups))
    sim = {g: {g: 1.0} for g in groups}
    if group_similarity is None:
        return sim
    if isinstance(group_similarity, dict) and set(group_similarity) == {"group_ids", "matrix"}:
        group_ids, group_similarity = group_similarity["group_ids"], group_similarity["matrix"]
    if isinstance(group_similarity, dict):
        for g, row in group_similarity.items():
            for g2, w in row.items():
                if g2 != g:
                    sim[g][g2] = float(w)
                    sim[g2][g] = float(w)
        return sim
    mat = np.asarray(group_similarity, dtype=np.float64)
    ids = list(range(len(mat))) if group_ids is None else list(group_ids)
    for i, g in enumerate(ids):
        for j, g2 in enumerate(ids):
            sim[g][g2] = float(mat[i, j])
    return sim


def reference_triplet_accuracy(descriptors, point_groups, group_similarity=None, group_ids=None, mode="soft"):
    """The reference's anchor loop; returns the four per-image values (None when no anchor is scored)."""
    dscmat = np.asarray(descriptors)
    matlist = [g.item() if isinstance(g, np.generic) else g for g in point_groups]
    sim = _similarity_rows(matlist, None if mode == "hard" else group_similarity, group_ids)
    matarr = np.empty(len(matlist), dtype=object)
    matarr[:] = matlist
    accuracy_all, accuracy_first = [], []
    accuracy_mat, accuracy_mat_first = {}, {}
    for p1 in range(dscmat.shape[0]):
        match_list = (dscmat[p1] * dscmat).sum(1)
        argsort = np.argsort(match_list)[::-1]
        sortmat = matarr[argsort]
        if mode in ("soft", "soft_only"):
            relation2weight = sim[matlist[p1]]
            weight_relations = np.zeros(len(sortmat), dtype=np.float32)
            for ky in relation2weight:
                weight_relations[np.array([m == ky for m in sortmat], dtype=bool)] = relation2weight[ky]
            rates = []
            for p2 in range(1, len(weight_relations)):
                if mode == "soft_only" and (weight_relations[p2] == 1 or weight_relations[p2] == 0):
                    continue
                error_count = (weight_relations[p2] > weight_relations[:p2]).sum()
                error_count += (weight_relations[p2] < weight_relations[p2:]).sum()
                total = (weight_relations[p2] < weight_relations[1:]).sum() + \
                    (weight_relations[p2] > weight_relations[1:]).sum()
                if total == 0:
                    continue
                rates.append(1 - error_count / total)
            if len(rates) == 0:
                continue
            accuracy = np.array(rates).mean()
            top1 = weight_relations[1] >= weight_relations[1:].max()
        else:
            same_mat = np.array([m == matlist[p1] for m in sortmat], dtype=bool)
            cumulative_sum = np.cumsum(~same_mat)
            if same_mat[1:].sum() == 0 or cumulative_sum[-1] == 0:
                continue
            accuracy = ((1 - (cumulative_sum[1:] / cumulative_sum[-1])) * same_mat[1:]).sum() / same_mat[1:].sum()
            top1 = same_mat[1]
        accuracy_all.append(accuracy)
        accuracy_first.append(top1)
        if matlist[p1] not in accuracy_mat:
            accuracy_mat[matlist[p1]] = []
            accuracy_mat_first[matlist[p1]] = []
        accuracy_mat[matlist[p1]].append(accuracy)
        accuracy_mat_first[matlist[p1]].append(top1)
    if not accuracy_all:
        return {"point_triplet": None, "material_triplet": None, "point_top1": None, "material_top1": None,
                "num_anchors": 0}
    return {
        "point_triplet": float(np.mean(accuracy_all)),
        "material_triplet": float(np.mean([np.mean(v) for v in accuracy_mat.values()])),
        "point_top1": float(np.mean(accuracy_first)),
        "material_top1": float(np.mean([np.mean(v) for v in accuracy_mat_first.values()])),
        "num_anchors": len(accuracy_all),
    }
