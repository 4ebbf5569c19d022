"""Training the demo model: targets, losses, augmentation and the training loop.

Training is the means to get a checkpoint to deploy, not the product: it follows mmdet3d's
CenterPoint recipe (Gaussian heatmap targets, focal + L1 losses, AdamW with a one-cycle
schedule) and writes checkpoints in mmdet3d layout. See ``docs/training.md``.
"""
