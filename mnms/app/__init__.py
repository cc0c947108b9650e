"""The only code that reads the composed Hydra config: one module per ``mode``, dispatched by ``run``.

Everything below ``mnms.app`` takes plain arguments and config dataclasses; here the
config is converted once (``mnms.utils.config.from_config``) and handed on.
"""
