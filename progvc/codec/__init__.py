"""The codec a user holds: :class:`~progvc.codec.codec.Codec` (a loaded model that encodes and
decodes videos), its options (:mod:`.options`: ``EncodeOptions``, ``DecodeOptions``), the checks
that admit a stream (:mod:`.admission`), the streaming :class:`~progvc.codec.streaming.Decoder`,
rate control (:mod:`.rate_control`), the per-GOP decode iterator (:mod:`.decoded_gops`) and the
resource limits every call is checked against (:mod:`.limits`).

Nothing is imported here, so that ``progvc.codec.limits`` and ``progvc.codec.options`` stay free of torch.
"""
