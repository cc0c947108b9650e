"""Everything Lightning in mnms: the child classifier, its in-memory data module, and the Trainer that fits it.

``trainer.evaluate_child`` trains and scores one child; the search reaches it only
through ``mnms.executors.runner.ChildRunner``.
"""
