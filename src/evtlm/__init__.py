"""evtlm: e-commerce event logs as text.

The pipeline, one package per stage (imports point upstream only; tests/test_layers.py)::

    ingest -> text -> tasks (+ splits) -> data -> train -> decode -> evaluate -> predict

`evtlm.recipe` holds the typed schema each stage reads its section from, `evtlm.errors` the
errors every stage raises; `evtlm.cli` is a thin layer of subcommands over the stages.
docs/internals.md is the one-page map.
"""

__version__ = "0.1.0"

import logging as _logging


class _LibraryNoise(_logging.Filter):
    """Drops transformers messages a user of evtlm cannot act on (issue 12, finding 16): the loss
    warning of a GPT-2 config that names no ``loss_type`` (the default is the right loss), and a
    deprecation inside ``generate`` that evtlm's own calls do not trigger. Everything else passes.
    """

    NOISE = ("was set in the config but it is unrecognized", "`past_key_values`/`cache_params` are deprecated")

    def filter(self, record: _logging.LogRecord) -> bool:
        return not any(text in record.getMessage() for text in self.NOISE)


# attached by name, so importing evtlm does not import transformers
for _name in ("transformers.modeling_utils", "transformers.utils.generic"):
    _logging.getLogger(_name).addFilter(_LibraryNoise())
