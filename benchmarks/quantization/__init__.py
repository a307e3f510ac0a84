"""Quantization recipes at production shapes (`make bench-quantization`)."""
