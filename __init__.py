"""seqrec: sequential-recommendation RL environments fitted from logged behaviour data.

``import seqrec`` registers the ``SeqRec-v0`` Gymnasium environment (``gymnasium.make(
"seqrec:SeqRec-v0")`` does it without the import). Importing is cheap: torch and the
models load when an environment is made.
"""

import gymnasium as _gym

__version__ = "0.1.0"

if "SeqRec-v0" not in _gym.registry:
    _gym.register(
        id="SeqRec-v0",
        entry_point="seqrec.envs.seqrec_env:SeqRecEnv",
        vector_entry_point="seqrec.envs.vector_env:SeqRecVectorEnv",
        max_episode_steps=50,
    )
