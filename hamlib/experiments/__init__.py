"""Small studies behind the book, each a module with a CLI: ``python -m hamlib.experiments.<name>``.

- :mod:`hamlib.experiments.onestep`: one-step gradient vs BPTT vs implicit in training, on a toy task
  that needs global context (chapter 05; Geng et al., ICLR 2021, arXiv 2109.04553).
"""
__all__ = ["onestep"]
