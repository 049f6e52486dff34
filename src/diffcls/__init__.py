"""diffcls: diffusion-based image classification (DiDiCM, Diffusion Classifier, rep-conditioned DiT)."""

__version__ = "0.1.0"
