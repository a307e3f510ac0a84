"""The Open Inference Protocol (KServe v2 / Triton `inference.GRPCInferenceService`) over every
loaded model, next to the domain APIs.

The protocol messages come from `tritonclient.grpc.service_pb2`, NVIDIA's generated code of the
public spec (Triton's grpc_service.proto). infersuite does not generate its own copy: protobuf
refuses to register the same `inference.*` symbols twice in one process ("duplicate symbol"),
and the runtime's Triton backend and the tests import tritonclient into the serving process.
"""

from infersuite.services.runtime.oip.servicer import OipServicer

SERVICE_NAME = "inference.GRPCInferenceService"

__all__ = ["SERVICE_NAME", "OipServicer"]
