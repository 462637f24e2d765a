"""Training the MatSeg descriptor network (SPEC §6): loss, augmentations, pixel-capped batches, data
mixture and configuration used by ``train/train.py``.

Submodules are imported on use (``from matseg_hub.training.loss import material_loss``) so that importing the
package stays cheap.
"""
