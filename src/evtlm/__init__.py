"""evtlm: e-commerce event logs as text.

The pipeline, one module per stage (imports point upstream only)::

    events -> verbalize -> tasks/splits -> data -> train -> decode -> evaluate / predict

`recipe` holds the typed schema each stage reads its section from; `cli` is a thin layer of
subcommands over the stages.
"""

__version__ = "0.1.0"
