"""seqrec: sequential-recommendation RL environments fitted from logged behaviour data.

``import seqrec`` registers the ``SeqRec-v0`` Gymnasium environment.
"""

__version__ = "0.1.0"
