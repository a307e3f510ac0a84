"""The HEAR 2021 API with the passt embedder as the default model (module name `hear_infersuite.passt`)."""

from hear_infersuite import api
from hear_infersuite.api import HearModel, get_scene_embeddings, get_timestamp_embeddings


def load_model(model_file_path: str = "", threads: int = 0) -> HearModel:
    """A repository model directory or model.onnx; "" loads <repository>/audio-passt-fp32."""
    return api.load_model(model_file_path or str(api.default_model("audio-passt-fp32")), threads)


__all__ = ["HearModel", "get_scene_embeddings", "get_timestamp_embeddings", "load_model"]
