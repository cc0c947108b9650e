"""mnms: Multitask Neural Model Search for text classification."""

__version__ = "0.1.0"
