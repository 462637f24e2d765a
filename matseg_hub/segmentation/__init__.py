"""Segmentation sets (images + one binary mask per region) and point-prompted IoU on them (SPEC §10)."""
