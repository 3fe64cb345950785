"""Figure code of the studies, one module per study: pure functions from a config and a part result to
:class:`diffsim.studies.Figure` objects."""
