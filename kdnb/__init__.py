"""kdnb: "Knowledge Distillation Beyond Model Compression" (Sarfraz, Arani, Zonooz, ICPR 2020), re-run.

The engine (models, data, losses, methods and their registry, the loop, attacks, store, studies, the
``kdnb`` command); ``kdnb.report``, the book's report layer beside it, reads it and is never imported by
it. A method not in the paper lives in a user's own file, a plugin (``examples/dkd.py``).
"""

__version__ = "0.1.0"

# The revision of the training numerics: bumped whenever a change alters what a run computes
# (tests/test_golden.py fails until it is). Records carry it; `kdnb study --status` calls a record
# made under another revision "stale". Refactors that leave the golden values unchanged keep it.
NUMERICS_REVISION = 1


class ConfigError(ValueError):
    """A bad configuration value, in one line naming it and the valid choices. Defined here, below every
    module, for ``kdnb.methods`` and ``kdnb.config`` to raise (public name: ``kdnb.config.ConfigError``)."""
