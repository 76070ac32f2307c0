"""seqrec.data: logged datasets -- read, preprocess, split, cache -- and the embedded synthetic one.

====================  ========================================================================
module                holds
====================  ========================================================================
``table``             :class:`InteractionTable`, the canonical event table every reader produces
``readers``           ``read_log``: MovieLens, RecBole, synthetic, CSV and Parquet logs (files or
                      folders of parts) -> table
``scan``              ``scan_log``: the streaming reader (Polars batches -> compact columns) behind
                      the generic and synthetic logs
``validate``          cell validators that raise the one-line error naming file, line and column
``positive``          ``parse_positive``: ``--positive`` rules (``value>=4``, ``behaviour==click``)
``preprocess``        positives/negatives, value threshold, de-duplication, k-core (:class:`PrepConfig`)
``sequences``         :class:`SequenceData`: per-user sequences in CSR form, chronological splits,
                      saved as Arrow IPC files and memory-mapped on load
``prepare``           ``prepare_dataset``: read + preprocess + split once, cached by content hash
``fetch``             ``fetch_dataset``: download public datasets, verified by SHA-256
``synth_config``      :class:`SynthConfig`, every knob of the synthetic generator, and its defaults
``synth_presets``     ``synth_preset``: named regimes (sessions, sparse catalogue, positives only,
                      funnel) of the same model, as real logs are shaped
``synth_parameters``  ``draw_parameters``: the synthetic catalogue and users drawn from a seed
``ground_truth``      :class:`GroundTruth`: the true click / exit / churn probabilities, its
                      ``logit_terms``, ``save`` / ``load`` (``truth.npz``)
``logging_policy``    :class:`LoggingPolicy`: the policy that showed the logged items, its ``pscore``
``synthetic``         ``generate`` (the logging simulation) and ``write_synthetic`` (the files)
====================  ========================================================================
"""
