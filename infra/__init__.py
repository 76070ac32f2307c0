"""seqrec.infra: what every package needs and none owns.

=============  ================================================================
module         holds
=============  ================================================================
``errors``     :class:`SeqrecError` and its kinds: bad input reported in one line
``atomic``     ``atomic_write`` / ``write_json_atomic``: temp file, then rename
``threads``    ``torch_threads``: a fixed torch CPU thread count for a block
``progress``   progress bars that become one line every few seconds in a log
``configs``    config dataclasses from plain dicts (one-line error on an unknown key)
``budget``     ``EpochBudget``: epoch sizes that fit a wall-clock budget
``devices``    ``resolve_device``: ``auto | cpu | cuda`` to a torch device, one-line errors
=============  ================================================================

Imports nothing from the other seqrec packages, so every layer may import it.
"""
