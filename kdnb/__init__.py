"""kdnb: "Knowledge Distillation Beyond Model Compression" (Sarfraz, Arani, Zonooz, ICPR 2020), re-run."""

__version__ = "0.1.0"

# The revision of the training numerics: bumped whenever a change alters what a run computes
# (tests/test_golden.py fails until it is). Records carry it; `kdnb study --status` calls a record
# made under another revision "stale". Refactors that leave the golden values unchanged keep it.
NUMERICS_REVISION = 1
