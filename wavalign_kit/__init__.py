"""wavalign-kit: a reproducibility kit for WavAlign (adaptive hybrid post-training of spoken dialogue models)."""

__version__ = "0.1.0"
