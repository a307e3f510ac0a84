"""infersuite: one top-level package for everything that installs.

- `infersuite.clients`: the typed gRPC clients of the four services and the edge SDK's device, one import.
- `infersuite.protos`: the generated stubs (made from the .proto files at build time, never committed).
- `infersuite.modelmeta`: the meta.json schema the server and the exporters share.
- `infersuite.services`: the server (`python -m infersuite.services`, with the `serve` extra) and each
  service's client module (`infersuite.services.<service>.client`).

The repository's training, export and benchmark packages (models, exporters, benchmarks) are not installed.
"""
