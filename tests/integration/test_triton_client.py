"""The Triton backend's client side against a real Open Inference Protocol server: infersuite's own
(it speaks Triton's protocol, and runs where no tritonserver binary does). One channel per
backend, and Triton's status codes mapped by a table, never by text (issue 14)."""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pytest
from tritonclient.utils import InferenceServerException

from infersuite.services.ctr import CtrService, CtrSettings
from infersuite.services.runtime import (
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    RuntimeSettings,
    Unavailable,
    build_server,
)
from infersuite.services.runtime.backends.triton import TritonBackend, triton_error
from infersuite.services.runtime.repository import ModelRepository

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def remote(tiny_ctr, tmp_path_factory):
    """An OIP server serving din-fp32 and a copy of it, din-copy."""
    repository = tmp_path_factory.mktemp("remote") / "repo"
    shutil.copytree(tiny_ctr.repository, repository)
    shutil.copytree(repository / "din-fp32", repository / "din-copy")
    config = repository / "din-copy" / "config.pbtxt"  # the name in a config must be its directory's (as Triton)
    config.write_text(config.read_text().replace('name: "din-fp32"', 'name: "din-copy"'))
    settings = RuntimeSettings(port=0, metrics_port=-1, host="127.0.0.1", model_repository=repository)
    server, port = await build_server(settings, [CtrService(CtrSettings(model="din-fp32",
                                                                        extra_models=["din-copy"]))])
    await server.start()
    await server.wait_ready(timeout=60)
    yield ModelRepository(repository), port
    await server.stop(0)


def _inputs() -> dict[str, np.ndarray]:
    """One user's history and two candidate rows (DIN's rows layout)."""
    return {"history_items": np.array([[1, 2, 3]], np.int64), "history_categories": np.array([[1, 1, 2]], np.int64),
            "history_mask": np.ones((1, 3), np.float32), "candidate_items": np.array([4, 5], np.int64),
            "candidate_categories": np.array([1, 2], np.int64), "candidate_user": np.array([0, 0], np.int64)}


async def test_every_model_of_a_backend_shares_one_channel_and_codes_map_by_table(remote) -> None:
    repository, port = remote
    backend = TritonBackend(RuntimeSettings(triton_url=f"127.0.0.1:{port}", triton_timeout_s=5))
    try:
        first = await backend.load(repository.resolve("din-fp32"))
        second = await backend.load(repository.resolve("din-copy"))
        assert first.client is second.client
        np.testing.assert_array_equal((await first.infer(_inputs()))["click_probability"],
                                      (await second.infer(_inputs()))["click_probability"])
        # A model the remote does not serve: its NOT_FOUND arrives as NOT_FOUND, not UNAVAILABLE.
        gone = dataclasses.replace(repository.resolve("din-copy"), name="din-gone")
        missing = type(first)(gone, first.client, {"inputs": [], "outputs": []}, RuntimeSettings())
        with pytest.raises(NotFound, match="'din-gone' is not served by the Triton backend"):
            await missing.infer({})
        await first.close()  # a model's close leaves the shared channel open
        assert (await second.infer(_inputs()))["click_probability"].shape == (2,)
    finally:
        await backend.close()


@pytest.mark.parametrize(("status", "error"), [
    ("StatusCode.RESOURCE_EXHAUSTED", ResourceExhausted), ("StatusCode.NOT_FOUND", NotFound),
    ("StatusCode.INVALID_ARGUMENT", InvalidArgument), ("StatusCode.UNAVAILABLE", Unavailable),
    ("StatusCode.INTERNAL", Unavailable), (None, Unavailable),
    # Text that merely mentions a code is not that code.
    ("StatusCode.UNKNOWN", Unavailable)])
def test_triton_status_codes_map_by_table_and_triton_text_stays_in_the_log(status, error) -> None:
    exc = InferenceServerException("NOT_FOUND in node '/item_embedding/Gather' at /models/din/1", status=status)
    mapped = triton_error(exc, "din")
    assert type(mapped) is error
    assert "Gather" not in mapped.message and "/models" not in mapped.message
