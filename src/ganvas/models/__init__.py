"""Generator/discriminator architectures, built by short name from the registry."""

from ganvas.models import (  # noqa: F401  (registers them)
    dcgan,
    dense,
    fastgan,
    msg,
    progressive,
    projected,
    stylegan2,
)
from ganvas.models.registry import (
    ModelFamily,
    ModelSpec,
    available_models,
    build_generator,
    build_models,
    get_model_family,
    register_model,
)

__all__ = [
    "ModelFamily",
    "ModelSpec",
    "available_models",
    "build_generator",
    "build_models",
    "get_model_family",
    "register_model",
]
