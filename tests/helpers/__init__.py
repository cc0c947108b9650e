"""Test-only helpers: composing the real config, tiny real searches, reading W&B's offline files."""
