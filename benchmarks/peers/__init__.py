"""The Python peers bench-serving compares infersuite with: MLServer 1.7.1 and KServe 0.21 serving the same ONNX file.

`make peers` installs each into its own venv under .peers/; launch.start_peer runs one pinned to given cores;
`python -m benchmarks.peers.check` proves every peer answers like onnxruntime. The runtime modules run inside the
peers' venvs and import nothing from infersuite, so this package's __init__ imports nothing either.
"""
