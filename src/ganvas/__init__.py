"""ganvas: train GANs on your own pictures, watch them learn, and generate images.

Quick start::

    import ganvas
    result = ganvas.train(data="digits", steps=2000)
    images = ganvas.load(result.run_dir).sample(16, seed=0)
    picture = ganvas.stylize("photo.jpg", "painting.jpg", size=512)
"""

__version__ = "0.1.0"

from ganvas.config import TrainConfig  # noqa: E402
from ganvas.errors import GanvasError  # noqa: E402
from ganvas.generate import ImageGenerator, load  # noqa: E402
from ganvas.style import StyleOptions, stylize  # noqa: E402
from ganvas.training import Callback, TrainResult, resume, train  # noqa: E402

__all__ = [
    "Callback",
    "GanvasError",
    "ImageGenerator",
    "StyleOptions",
    "TrainConfig",
    "TrainResult",
    "__version__",
    "load",
    "resume",
    "stylize",
    "train",
]
