"""The process around the codec, the bottom layer: imports nothing else of progvc.

:mod:`.errors` (the exception types every layer raises), :mod:`.devices` (which torch device),
:mod:`.determinism` (the torch settings applied around coding calls), :mod:`.memory` (the budgets
that bound each piece of work, what the machine has available), :mod:`.progress` (progress bars)
and :mod:`.atomic` (files written whole or not at all).
"""
