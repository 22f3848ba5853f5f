"""The bitstream: every byte of a ``.pvc`` stream, with neither torch nor constriction imported.

:mod:`.format` (header, chunk index, packing, parsing, validation; docs/FORMAT.md),
:mod:`.truncation` (a smaller valid stream by scale count or byte budget), :mod:`.info`
(``StreamInfo``, what a stream holds) and :mod:`.scales` (the scale grids a header implies).
Depends only on :mod:`progvc.runtime`.
"""
