"""torch -> ONNX export, parity checks, and the Triton-layout model repository writer."""
