"""Tasks and their inputs: loading and validating datasets, and turning texts into cached tensors.

``tasks`` (with ``task_files`` and ``download``) loads a named task; ``encoders`` turn
its texts into features once, which ``feature_cache`` keeps for every later child.
"""
