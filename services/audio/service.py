"""The audio service module: scene and timestamp embeddings (PaSST or bag of words), HEAR conventions."""

from __future__ import annotations

from protos import audio_pb2, audio_pb2_grpc
from services.audio.handler import AudioHandler
from services.audio.servicer import AudioServicer
from services.audio.settings import AudioSettings
from services.runtime import HandlerRegistry, Runtime
from services.runtime.repository import ModelRepository


class AudioService:
    name = "audio"
    grpc_service_names = (audio_pb2.DESCRIPTOR.services_by_name["AudioService"].full_name,)

    def __init__(self, settings: AudioSettings | None = None):
        self.settings = settings or AudioSettings()

    def required_models(self, repository: ModelRepository) -> list[str]:
        return [self.settings.passt_model, self.settings.bow_model]

    def register(self, server: HandlerRegistry, runtime: Runtime) -> None:
        audio_pb2_grpc.add_AudioServiceServicer_to_server(AudioServicer(AudioHandler(self.settings, runtime)), server)


SERVICE = AudioService()
