"""Generates the gRPC stubs into the wheel at build time (they are never committed); the rest of the
package definition is in pyproject.toml."""

from __future__ import annotations

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildPyWithStubs(build_py):
    def run(self) -> None:
        super().run()
        import grpc_tools
        from grpc_tools import protoc

        well_known = Path(grpc_tools.__file__).parent / "_proto"
        out = Path(self.build_lib)
        for proto in sorted(Path("infersuite/protos").glob("*.proto")):
            code = protoc.main(["protoc", "-I.", f"-I{well_known}", f"--python_out={out}", f"--pyi_out={out}",
                                f"--grpc_python_out={out}", str(proto)])
            if code != 0:
                raise RuntimeError(f"protoc failed on {proto}")


setup(cmdclass={"build_py": BuildPyWithStubs})
