"""Server reflection answers under both names tools ask: grpc.reflection.v1 (grpcurl and newer
tools try it first) and v1alpha, listing the same services, on a real aio server."""

from __future__ import annotations

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2

from infersuite.services.runtime import RuntimeSettings, build_server
from tests.fixtures import EchoService

pytestmark = pytest.mark.integration


async def _list(channel: grpc.aio.Channel, package: str) -> list[str]:
    call = channel.stream_stream(f"/{package}.ServerReflection/ServerReflectionInfo",
                                 request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
                                 response_deserializer=reflection_pb2.ServerReflectionResponse.FromString)
    responses = call(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10)
    return [s.name async for r in responses for s in r.list_services_response.service]


async def test_v1_and_v1alpha_reflection_list_the_same_services() -> None:
    server, port = await build_server(RuntimeSettings(port=0, metrics_port=-1, host="127.0.0.1",
                                                      auth_token="s3cret"), [EchoService()])
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:  # reflection needs no token
            v1, v1alpha = await _list(channel, "grpc.reflection.v1"), await _list(channel, "grpc.reflection.v1alpha")
        assert v1 == v1alpha
        assert {"infersuite.test.Echo", "grpc.health.v1.Health", "inference.GRPCInferenceService"} <= set(v1)
    finally:
        await server.stop(0)


async def _file_of(channel: grpc.aio.Channel, symbol: str) -> reflection_pb2.ServerReflectionResponse:
    call = channel.stream_stream("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                                 request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
                                 response_deserializer=reflection_pb2.ServerReflectionResponse.FromString)
    responses = call(iter([reflection_pb2.ServerReflectionRequest(file_containing_symbol=symbol)]), timeout=10)
    (reply,) = [r async for r in responses]  # one request, one answer
    return reply


async def test_a_method_symbol_resolves_to_its_service_file_as_grpcurl_describe_asks() -> None:
    from google.protobuf import descriptor_pb2

    server, port = await build_server(RuntimeSettings(port=0, metrics_port=-1, host="127.0.0.1"), [EchoService()])
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            for symbol, service in (("inference.GRPCInferenceService.ModelInfer", "GRPCInferenceService"),
                                    ("inference.GRPCInferenceService", "GRPCInferenceService"),
                                    ("grpc.health.v1.Health.Check", "Health")):
                reply = await _file_of(channel, symbol)
                assert reply.WhichOneof("message_response") == "file_descriptor_response", symbol
                files = [descriptor_pb2.FileDescriptorProto.FromString(raw)
                         for raw in reply.file_descriptor_response.file_descriptor_proto]
                assert any(service in [s.name for s in f.service] for f in files), (symbol, [f.name for f in files])
            for unknown in ("inference.GRPCInferenceService.NoSuchMethod", "no.such.Service.Method"):
                reply = await _file_of(channel, unknown)
                assert reply.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0], unknown
    finally:
        await server.stop(0)
