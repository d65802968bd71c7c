"""Neural style transfer: frozen VGG feature extractors, losses and the optimiser.

``stylize(content, style, **options)`` is the entry point; ``StyleOptions`` lists the options.
"""

from ganvas.style.backbones import backbone_names, load_backbone
from ganvas.style.transfer import StyleOptions, stylize, stylize_to_file

__all__ = ["StyleOptions", "backbone_names", "load_backbone", "stylize", "stylize_to_file"]
