"""Quantization recipes after Gholami et al., "A Survey of Quantization Methods for Efficient
Neural Network Inference" (2021), each implemented with a real toolchain (onnxruntime.quantization,
torch fake-quant) and measured, never claimed."""

from exporters.quantize.family import QuantFamily, RecipeRefused
from exporters.quantize.recipes import RECIPES

__all__ = ["RECIPES", "QuantFamily", "RecipeRefused"]
