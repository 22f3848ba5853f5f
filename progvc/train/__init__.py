"""Training: the data pipeline (:mod:`.data`) and the tokenizer and context-model stages."""
