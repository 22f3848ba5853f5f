"""Frames in and out: reading and writing video files (:mod:`.io`), raw YUV (:mod:`.raw_yuv`),
area downscaling by whole factors (:mod:`.downscale`), coding at a reduced size (:mod:`.resize`) and
the built-in sample clip (:mod:`.samples`). Depends on :mod:`progvc.runtime` and :mod:`progvc.stream`.
"""
