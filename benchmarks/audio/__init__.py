"""The audio family's studies (generality, quantization quality, denormal cost) and its report (`make report-audio`)."""
