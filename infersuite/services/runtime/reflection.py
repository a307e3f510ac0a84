"""Server reflection, v1alpha and v1 side by side.

grpcurl and newer tools ask `grpc.reflection.v1` first and fall back to v1alpha; grpcio-reflection
1.81 ships only v1alpha, whose messages are wire-identical to v1's (same fields and numbers in
another package), so one servicer answers both names. The aio servicer is chosen explicitly:
`enable_server_reflection` picks the blocking one for anything that is not a grpc.aio.Server, such
as the runtime's handler registry, and a blocking generator cannot read an aio request stream.

protobuf's upb descriptor pool finds the file of a service, message, enum or field by its full name
but not of a method (`pkg.Service.Method`), which is what `grpcurl describe pkg.Service.Method`
asks: such a symbol is answered with the file of its service when that service has the method.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_reflection.v1alpha._async import ReflectionServicer

from infersuite.services.runtime.handler_wrapper import HandlerRegistry

V1_SERVICE_NAME = "grpc.reflection.v1.ServerReflection"


class _Reflection(ReflectionServicer):
    """grpcio-reflection's aio servicer, also resolving method names to their service's file."""

    def _file_containing_symbol(self, request: reflection_pb2.ServerReflectionRequest,
                                fully_qualified_name: str) -> reflection_pb2.ServerReflectionResponse:
        service, _, method = fully_qualified_name.rpartition(".")
        try:
            self._pool.FindFileContainingSymbol(fully_qualified_name)
        except KeyError:
            try:
                if self._pool.FindServiceByName(service).FindMethodByName(method) is not None:
                    fully_qualified_name = service
            except KeyError:
                pass  # no such service or method: the base class answers NOT_FOUND
        return super()._file_containing_symbol(request, fully_qualified_name)  # type: ignore[no-any-return]


def add_reflection(service_names: Sequence[str], registry: HandlerRegistry) -> None:
    servicer = _Reflection(list(service_names))
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, registry)
    v1 = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo, request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString)
    registry.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(V1_SERVICE_NAME,
                                                                            {"ServerReflectionInfo": v1}),))
