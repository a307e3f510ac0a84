"""Runnable client examples, shipped in the wheel: `python -m infersuite.examples.<name>` (ctr_score,
segmentation_segment, splitcompute_edge BUNDLE, audio_embed, own_model MODEL); target from INFERSUITE_TARGET."""
