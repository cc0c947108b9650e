"""What a child is and what training one gives back: the vocabulary the search and Lightning share.

``arch`` is the architecture a search proposes, ``inputs`` what it asks of the
encoders, ``config`` the budget a child trains with, ``result`` what it scored.
Nothing here imports Lightning: ``lightning_modules`` builds and trains children from
these, and the search only ever handles these values.
"""
