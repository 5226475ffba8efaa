"""LayerSkip reproduction: our Llama, checkpoint I/O, decoding strategies and suite systems."""
