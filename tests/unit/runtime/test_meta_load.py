"""The runtime validates meta.json when it resolves a version: a bad or missing field is a load error
(RepositoryError, an InferSuiteError so RepositoryIndex shows its message) naming the model, the
version and the field; a valid file reaches the services as the dict it is."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from infersuite.modelmeta import CtrMeta
from infersuite.services.runtime import InferSuiteError
from infersuite.services.runtime.errors import RepositoryError
from infersuite.services.runtime.meta import InvalidModelMeta, load_meta
from infersuite.services.runtime.repository import ModelRepository

SHIPPED = Path(__file__).resolve().parents[3] / "shipped_models"


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    """din-fp32 as shipped, and a version 2 of it whose meta.json we break."""
    root = tmp_path / "repo"
    shutil.copytree(SHIPPED / "din-fp32", root / "din-fp32")
    shutil.copytree(root / "din-fp32" / "1", root / "din-fp32" / "2")
    return root


def _rewrite(root: Path, edit: Callable[[dict[str, Any]], Any]) -> None:
    path = root / "din-fp32" / "2" / "meta.json"
    meta = json.loads(path.read_text())
    edit(meta)
    path.write_text(json.dumps(meta))


def test_a_valid_meta_reaches_the_services_as_the_dict_in_the_file(repository: Path) -> None:
    entry = ModelRepository(repository).resolve("din-fp32", "1")
    assert entry.meta == json.loads((repository / "din-fp32" / "1" / "meta.json").read_text())
    assert "schema_version" not in entry.meta  # validated, not rewritten


def test_a_broken_field_fails_the_load_naming_model_version_and_field(repository: Path) -> None:
    _rewrite(repository, lambda m: m["limits"]["inputs"]["history_items"].update(max_shape=[256, -5]))
    with pytest.raises(InvalidModelMeta) as refused:
        ModelRepository(repository).resolve("din-fp32")
    assert str(refused.value) == ("model 'din-fp32' version 2: meta.json field limits.inputs.history_items."
                                  "max_shape[1]: Input should be greater than or equal to -1 (got -5)")
    assert (refused.value.model, refused.value.version) == ("din-fp32", "2")
    assert refused.value.fields == ["limits.inputs.history_items.max_shape[1]"]
    assert isinstance(refused.value, RepositoryError) and isinstance(refused.value, InferSuiteError)
    assert "/" not in refused.value.message.split(": meta.json")[0]  # no file path for RepositoryIndex
    assert ModelRepository(repository).resolve("din-fp32", "1").version == "1"  # the other version still resolves


def test_a_missing_family_field_fails_the_load(repository: Path) -> None:
    _rewrite(repository, lambda m: m.pop("vocabulary"))
    with pytest.raises(RepositoryError, match=r"^model 'din-fp32' version 2: meta.json field vocabulary: "
                                              r"Field required$"):
        ModelRepository(repository).resolve("din-fp32")


def test_a_future_schema_version_is_refused_by_its_number(repository: Path) -> None:
    _rewrite(repository, lambda m: m.update(schema_version=3))
    with pytest.raises(RepositoryError, match=r"version 2: meta.json field schema_version: 3 is newer"):
        ModelRepository(repository).resolve("din-fp32")


def test_load_meta_reads_a_file_or_a_dict(repository: Path, tmp_path: Path) -> None:
    path = repository / "din-fp32" / "1" / "meta.json"
    from_file = load_meta("din-fp32", "1", path)
    assert from_file == load_meta("din-fp32", "1", json.loads(path.read_text()))
    assert isinstance(from_file, CtrMeta) and from_file.vocabulary.n_items == 600
    broken = tmp_path / "meta.json"
    broken.write_text("{\"family\": ")
    with pytest.raises(InvalidModelMeta, match=r"^model 'm' version 7: meta.json is not valid JSON: "):
        load_meta("m", 7, broken)
