"""kdnb: "Knowledge Distillation Beyond Model Compression" (Sarfraz, Arani, Zonooz, ICPR 2020), re-run."""

__version__ = "0.1.0"

# The revision of the training numerics: bumped whenever a change alters what a run computes
# (tests/test_golden.py fails until it is). Records carry it; `kdnb study --status` calls a record
# made under another revision "stale". Refactors that leave the golden values unchanged keep it.
NUMERICS_REVISION = 1


class ConfigError(ValueError):
    """A bad configuration value; the message is one line naming the value and the valid choices.

    Defined here, below every module, because both ``kdnb.methods`` (a method's own checks) and
    ``kdnb.config`` (which builds on the methods) raise it; ``kdnb.config.ConfigError`` is its public name.
    """
