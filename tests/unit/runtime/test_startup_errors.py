"""Start-up misconfigurations end in one line naming the setting, never a traceback: the checks that
`python -m infersuite.services` runs before anything starts (infersuite/services/__main__.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from infersuite.services.__main__ import check_startup, settings_or_exit
from infersuite.services.runtime.settings import RuntimeSettings


def test_a_wrong_setting_is_named_with_its_value(monkeypatch) -> None:
    monkeypatch.setenv("INFERSUITE_WORKERS", "x")
    with pytest.raises(SystemExit) as refused:
        settings_or_exit()
    assert str(refused.value).startswith("infersuite: INFERSUITE_WORKERS='x': Input should be a valid integer")
    monkeypatch.delenv("INFERSUITE_WORKERS")
    monkeypatch.setenv("INFERSUITE_SERVICES", '["ctr"')  # broken JSON
    with pytest.raises(SystemExit, match=r"INFERSUITE_SERVICES='\[\"ctr\"': Value error, Expecting"):
        settings_or_exit()
    monkeypatch.setenv("INFERSUITE_SERVICES", "ctr, audio")  # comma-separated, like INFERSUITE_LOAD_MODELS
    assert settings_or_exit().services == ["ctr", "audio"]


def test_an_unknown_family_or_explicit_control_over_workers_is_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match=r"unknown service 'ctrx' \(families here: .*ctr"):
        check_startup(RuntimeSettings(services=["ctrx"], port=0, metrics_port=-1), 1)
    with pytest.raises(ValueError, match="explicit needs one serving process, not 2 workers"):
        check_startup(RuntimeSettings(model_control_mode="explicit", port=0, metrics_port=-1), 2)
    check_startup(RuntimeSettings(model_control_mode="explicit", services=[], port=0, metrics_port=-1,
                                  model_repository=Path(__file__).parent), 1)


def test_a_missing_model_repository_is_refused_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"INFERSUITE_MODEL_REPOSITORY=.*nowhere: no such directory"):
        check_startup(RuntimeSettings(services=[], port=0, metrics_port=-1, model_repository=tmp_path / "nowhere"), 1)
    check_startup(RuntimeSettings(services=[], port=0, metrics_port=-1, model_repository=tmp_path), 1)

