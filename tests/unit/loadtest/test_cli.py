"""Bad arguments end with one clear line and a non-zero exit, never a traceback."""

import pytest

from infersuite.loadtest.cli import build_parser, steps_from
from infersuite.loadtest.commands import main


def _fails(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return exit_info.value.code, err


def test_unknown_service_is_a_usage_error(capsys):
    code, err = _fails(["run", "--service", "nope", "--target", "localhost:1"], capsys)
    assert code == 2
    assert "unknown service 'nope'" in err and "ctr" in err  # says what exists


@pytest.mark.parametrize("rate", ["0", "-3", "100,0"])
def test_rate_must_be_positive(rate, capsys):
    code, err = _fails(["run", "--service", "health", "--rate", rate], capsys)
    assert code == 2 and "--rate must be > 0" in err


@pytest.mark.parametrize(("option", "value", "message"), [
    ("--concurrency", "two", "comma-separated list"),
    ("--duration", "0", "--duration must be > 0"),
    ("--deadline-ms", "-1", "--deadline-ms must be > 0"),
])
def test_bad_numbers_say_which_option(option, value, message, capsys):
    code, err = _fails(["run", "--service", "health", option, value], capsys)
    assert code == 2 and message in err


def test_rate_and_concurrency_are_exclusive(capsys):
    code, err = _fails(["run", "--service", "health", "--rate", "10", "--concurrency", "2"], capsys)
    assert code == 2 and "not allowed with" in err


def test_bad_generator_parameters(capsys):
    code, err = _fails(["run", "--service", "ctr", "--param", "n_items"], capsys)
    assert code == 2 and "expected KEY=VALUE" in err
    code, err = _fails(["run", "--service", "ctr", "--param", "colour=blue"], capsys)
    assert code == 2 and "unknown --param colour" in err
    code, err = _fails(["run", "--service", "ctr", "--param", "n_items=-4"], capsys)
    assert code == 2 and "n_items=-4: must be >= 1" in err
    code, err = _fails(["run", "--service", "oip"], capsys)
    assert code == 2 and "--param model=" in err


def test_missing_trace_and_bad_target(tmp_path, capsys):
    code, err = _fails(["run", "--service", "health", "--trace", str(tmp_path / "none.txt")], capsys)
    assert code == 2 and "--trace" in err and "none.txt" in err
    code, err = _fails(["run", "--service", "health", "--target", "localhost"], capsys)
    assert code == 2 and "expected host:port" in err


def test_steps_follow_the_load_options():
    parser = build_parser()
    closed = steps_from(parser.parse_args(["run", "--service", "health", "--concurrency", "1,4,16"]))
    assert [(s.mode, s.concurrency) for s in closed] == [("closed", 1), ("closed", 4), ("closed", 16)]
    opened = steps_from(parser.parse_args(["run", "--service", "health", "--rate", "50,100", "--arrival",
                                           "constant", "--deadline-ms", "250", "--warmup", "0"]))
    assert [(s.mode, s.rate, s.arrival, s.deadline_s, s.warmup_s) for s in opened] == [
        ("open", 50.0, "constant", 0.25, 0.0), ("open", 100.0, "constant", 0.25, 0.0)]
    default = steps_from(parser.parse_args(["run", "--service", "health"]))
    assert [(s.mode, s.concurrency) for s in default] == [("closed", 1)]


def test_list_names_every_generator(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("ctr", "oip", "health", "raw"):
        assert f"\n{name} " in "\n" + out
