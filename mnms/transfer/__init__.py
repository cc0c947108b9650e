"""What a trained controller is worth elsewhere: the ``controller.pt`` artifact, warm starts, zero-shot decoding.

``artifact`` saves and safely loads a controller; ``warm_start`` starts a search on new
tasks from one; ``decode`` ranks a controller's most likely architectures for a task.
"""
