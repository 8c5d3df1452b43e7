"""The book's report layer: the paper's numbers (``paper``), the analysis of stored runs (``analysis``:
summaries, paired gains, the findings and their verdicts), tables, figures, explorers (``widgets``),
page text (``pages``) and the book builder (``book``). It reads the engine; the engine never imports it.
"""
