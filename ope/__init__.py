"""seqrec.ope: off-policy evaluation of a policy's one-step value on logged bandit feedback.

====================  ===============================================================
module                holds
====================  ===============================================================
``checks``            input checks shared by the estimators (one-line errors)
``estimators``        DM, IPS, SNIPS, DR, Switch-DR, replay (Open Bandit Pipeline style)
``logged_feedback``   :class:`LoggedFeedback`: rounds of (context, action, reward, pscore)
                      and their Parquet form
``reward_models``     the DM / DR regression q̂(x, a)
``diagnostics``       what an estimate can and cannot say (ESS, max weight, flags)
====================  ===============================================================

Depends on :mod:`seqrec.infra` only; the CLI joins it to bundles and policies
(:mod:`seqrec.agents.offline`).
"""
