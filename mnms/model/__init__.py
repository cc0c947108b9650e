"""A trained child as a model in use: the self-contained folder ``mode=child`` saves, and predicting with it."""
