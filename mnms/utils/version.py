"""The mnms version, in the one module every layer may import (``mnms.__version__`` re-exports it)."""

VERSION = "0.1.0"  # pyproject.toml's version; a saved model records it (tests/test_model.py checks they agree)
