"""The saliency settings' names and defaults, without torch (the CLI's --help and the GUI's forms need them
before torch has loaded)."""

METHODS = ("vanilla", "smoothgrad", "gradxinput")
SCORES = ("logit", "logprob")
VIEWS = ("none", "d4")
COLORMAPS = ("inferno", "jet", "viridis", "gray")
DEFAULT_BLUR = 0.12
DEFAULT_THRESHOLD = 0.7
# Settings measured for localisation boxes on the bundled shapes (see tests/core/test_saliency.py)
LOCALISE = {"method": "vanilla", "views": "d4", "scales": (1.0, 1.5, 2.0, 2.5, 3.0)}
