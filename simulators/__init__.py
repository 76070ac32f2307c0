"""seqrec.simulators: a user simulator fitted from a logged dataset, and its fidelity report.

==================  ==========================================================================
module              holds
==================  ==========================================================================
``config``          :class:`SimulatorConfig`, every knob of the fit and of the dynamics
``examples``        clicked-item histories and never-touched negative sampling from a log
``response``        the click model (factorisation over user, history and side features)
``calibration``     held-out rows and pairs, and :class:`Calibration` (raw logit -> P(click))
``response_fit``    ``fit_response_model``: MAP fit, embedding-size search, calibration
``behaviour``       what follows a click (cart / purchase, or the rating)
``dynamics``        :class:`SimState`, satiation memory, misses, and the fitted exit model
``simulator``       :class:`UserSimulator` (batched ``initial_state`` / ``click_probability`` /
                    ``step`` / ``exit_probability``, ``save`` / ``load``) and ``fit_simulator``
``fidelity``        ``fidelity_report``: held-out AUC / log-loss / ECE, replay distributions,
                    ground-truth check on the synthetic default, throughput
``fidelity_plots``  the report's PNGs: reliability, popularity, categories, session lengths, truth
==================  ==========================================================================

The command line is :mod:`seqrec.cli.simulator` (``seqrec simulator fit DATA --out DIR``).
Depends on :mod:`seqrec.data` only (never on :mod:`seqrec.encoders`): the model that rewards
an agent is not the network that gives it its state.
"""
