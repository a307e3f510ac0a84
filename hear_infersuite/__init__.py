"""infersuite's audio embedders under the HEAR 2021 API (a torch package: it is not part of the
torch-free services). `hear_infersuite` and `hear_infersuite.passt` default to PaSST,
`hear_infersuite.bow` to the bag-of-words embedder; each takes a model directory of the
repository (or a model.onnx) as `model_file_path`:

    hear-validator hear_infersuite.bow --model model_repository/audio-bow-fp32
    python3 -m heareval.embeddings.runner hear_infersuite.passt --model model_repository/audio-passt-fp32 \\
        --tasks-dir <hear tasks>
"""

from hear_infersuite.api import HearModel, get_scene_embeddings, get_timestamp_embeddings, load_model

__all__ = ["HearModel", "get_scene_embeddings", "get_timestamp_embeddings", "load_model"]
