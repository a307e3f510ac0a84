"""The audio service module: scene and timestamp embeddings (PaSST or bag of words), HEAR conventions."""

from __future__ import annotations

from infersuite.protos import audio_pb2, audio_pb2_grpc
from infersuite.services.audio.handler import AudioHandler
from infersuite.services.audio.servicer import AudioServicer
from infersuite.services.audio.settings import AudioSettings
from infersuite.services.runtime import HandlerRegistry, Runtime
from infersuite.services.runtime.repository import ModelRepository


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
