"""Neural parts of the codec: the tokenizer (autoencoder + multi-scale residual VQ) and the context model."""
