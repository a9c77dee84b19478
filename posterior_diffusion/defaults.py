"""Defaults shared by the API, calibration runs and the command line.

It imports nothing, so that the command line's parser can read it cheaply.
"""

DEFAULT_FIELD_SHAPE = (64, 64)  # (H, W) [pixels] of simulated fields when none is given
# Map sides a sky grid or padded domain is rounded up to: the trained priors' U-Nets halve the
# map three times (docs/training.md).
MAP_SIDE_MULTIPLE = 8
