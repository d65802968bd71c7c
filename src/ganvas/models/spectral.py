"""Spectral normalisation (Miyato et al. 2018) for every weight layer of a network."""

from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm

from ganvas.models.layers import EqualizedConv2d, EqualizedLinear

# Equalised layers scale their normalised weight by a constant, which spectral
# normalisation then sees through: the product still has a bounded largest singular value.
_WEIGHT_LAYERS = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, EqualizedConv2d, EqualizedLinear)


def apply_spectral_norm(module: nn.Module) -> nn.Module:
    """Constrain each conv/linear layer's largest singular value to 1, in place; layers
    whose weight is already parametrised (fastgan normalises every layer itself) are left
    as they are."""
    for layer in list(module.modules()):
        if isinstance(layer, _WEIGHT_LAYERS) and not parametrize.is_parametrized(layer):
            spectral_norm(layer)
    return module
