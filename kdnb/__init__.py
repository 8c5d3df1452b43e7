"""kdnb: "Knowledge Distillation Beyond Model Compression" (Sarfraz, Arani, Zonooz, ICPR 2020), re-run."""

__version__ = "0.1.0"
