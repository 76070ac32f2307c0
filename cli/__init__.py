"""seqrec.cli: the ``seqrec`` command line, one module per command group.

=============  ====================================================================
module         commands
=============  ====================================================================
``main``       the ``seqrec`` app, error handling (one line, exit 2), ``--debug``
``options``    options shared by every command that reads a log; output helpers
``data``       ``seqrec data synth | fetch | info | prepare``
``encoder``    ``seqrec pretrain``, ``seqrec encoder evaluate``
``simulator``  ``seqrec simulator fit``
``workflow``   ``seqrec prepare | train | evaluate | demo``
``ope``        ``seqrec ope run | export | validate``
=============  ====================================================================

The CLI is the one place that joins the packages; every option's default is read from the
dataclass field it sets.
"""
