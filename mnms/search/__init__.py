"""The search: the space of architectures, the controller, the strategies and the loop that runs them.

``space`` declares the decisions; ``controller`` (with ``task_embedding``) is the LSTM
policy; ``strategies/`` turn proposals and rewards into learning; ``loop.Search`` runs
a search in a run dir, with ``records`` as its source of truth and ``progress`` on screen.
"""
