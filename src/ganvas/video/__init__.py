"""Video: frames in and out with PyAV, optical flow with OpenCV, stylisation frame by frame."""

# How strongly a frame keeps the last result where the motion carries it (0: not at all).
DEFAULT_TEMPORAL_WEIGHT = 1.0
