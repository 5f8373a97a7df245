"""Segmentation models, built by name: ``create_model("unet", width=16)``."""
from models import segnet, unet  # noqa: F401  (importing registers the builders)
from models.registry import create_model, list_models, min_input_side, register_model

__all__ = ["create_model", "list_models", "min_input_side", "register_model"]
