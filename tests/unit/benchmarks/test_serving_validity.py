"""bench-serving's validity checks on synthetic /proc texts: parsing, busy shares, who used the cores,
the flags, the verdict and the INVALID stamp. No sockets, no servers, no real /proc readings."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.serving import machine, report, validity
from benchmarks.serving.__main__ import ceilings_by_round
from benchmarks.serving.machine import CoreTimes, ProcessCpu, Sample, Window

HZ = machine.CLOCK_TICKS
DRIVER, SERVER, GENERATOR, TRAINER = 100, 101, 102, 900


def proc_stat(cores: dict[int, tuple[int, ...]]) -> str:
    """A /proc/stat text: cpuN user nice system idle iowait irq softirq steal guest guest_nice."""
    total = [sum(column) for column in zip(*cores.values(), strict=True)]
    lines = ["cpu  " + " ".join(map(str, total))]
    lines += [f"cpu{n} " + " ".join(map(str, values)) for n, values in cores.items()]
    return "\n".join([*lines, "intr 121771 0 0", "ctxt 218016", "btime 1765000000", "procs_running 3"]) + "\n"


def pid_stat(pid: int, comm: str, ppid: int, utime: int, stime: int = 0, cutime: int = 0, cstime: int = 0) -> str:
    """A /proc/<pid>/stat line (52 fields), the CPU fields in clock ticks."""
    fields = ["S", str(ppid), str(pid), str(pid), "0", "-1", "4194304", "100", "0", "0", "0",
              str(utime), str(stime), str(cutime), str(cstime), "20", "0", "1", "0", "1000"]
    return f"{pid} ({comm}) " + " ".join(fields + ["0"] * 32) + "\n"


def sample(at: float, cores: dict[int, tuple[int, ...]], processes: list[ProcessCpu],
           affinity: dict[int, frozenset[int]], load: float = 0.1) -> Sample:
    table = {p.pid: p for p in processes}
    return Sample(at, machine.parse_proc_stat(proc_stat(cores)), table, machine.process_tree(table, DRIVER),
                  affinity, (load, load, load))


PINNED = {SERVER: frozenset({1}), GENERATOR: frozenset({0}), DRIVER: frozenset({0, 1})}


def ticks(seconds: float) -> int:
    return round(seconds * HZ)


def window(server_s: float, trainer_s: float = 0.0, softirq_s: float = 0.0, idle1_s: float = 0.0,
           seconds: float = 10.0, generator_s: float = 5.0, trainer_pid: int = TRAINER) -> Window:
    """A 10 s window: the server pinned to core 1, the generator to core 0, optionally a foreign trainer on
    core 1, softirq work on core 1 and idle time on core 1 (busy + idle of each core = the window)."""
    before = sample(0.0, {0: (0,) * 10, 1: (0,) * 10},
                    [ProcessCpu(DRIVER, 1, "python", 50, 0), ProcessCpu(SERVER, DRIVER, "python", 10, 0),
                     ProcessCpu(GENERATOR, DRIVER, "python", 5, 0), ProcessCpu(trainer_pid, 1, "train.py", 7, 0)],
                    PINNED)
    core1 = (ticks(server_s + trainer_s), 0, 0, ticks(idle1_s), 0, 0, ticks(softirq_s), 0, 0, 0)
    core0 = (ticks(generator_s), 0, 0, ticks(seconds - generator_s), 0, 0, 0, 0, 0, 0)
    after = sample(seconds, {0: core0, 1: core1},
                   [ProcessCpu(DRIVER, 1, "python", 50, 0),
                    ProcessCpu(SERVER, DRIVER, "python", 10 + ticks(server_s), 0),
                    ProcessCpu(GENERATOR, DRIVER, "python", 5 + ticks(generator_s), 0),
                    ProcessCpu(trainer_pid, 1, "train.py", 7 + ticks(trainer_s), 0)], PINNED, load=2.4)
    return Window(before, after)


def test_proc_stat_is_parsed_per_core_with_idle_and_iowait_idle_and_guest_not_counted_twice() -> None:
    cores = machine.parse_proc_stat(proc_stat({0: (731, 5, 553, 24349, 29, 7, 5, 1, 40, 0),
                                               1: (5998, 0, 1788, 17699, 170, 0, 22, 3, 0, 0)}))
    assert sorted(cores) == [0, 1]  # the all-cores "cpu" line is not a core
    assert cores[0] == CoreTimes(busy=731 + 5 + 553 + 7 + 5 + 1, idle=24349 + 29, kernel=12, steal=1)
    assert cores[1].total == 5998 + 1788 + 17699 + 170 + 22 + 3


def test_an_old_kernels_shorter_proc_stat_lines_read_as_zero_for_the_missing_columns() -> None:
    cores = machine.parse_proc_stat("cpu  10 0 5 100\ncpu0 10 0 5 100\n")
    assert cores == {0: CoreTimes(busy=15, idle=100, kernel=0, steal=0)}


@pytest.mark.parametrize("comm", ["python", "tmux: server", "weird) (name", "(sd-pam)"])
def test_a_process_stat_line_is_parsed_whatever_its_name_holds(comm: str) -> None:
    process = machine.parse_process_stat(pid_stat(4242, comm, 17, utime=300, stime=20, cutime=7, cstime=3))
    assert process == ProcessCpu(4242, 17, comm, own_ticks=320, reaped_ticks=10)
    assert process.ticks == 330


def test_cpu_in_window_counts_reaped_children_once_and_new_processes_from_zero() -> None:
    before = {1: ProcessCpu(1, 0, "make", 0, 0), 2: ProcessCpu(2, 1, "loadgen", 40, 0),
              3: ProcessCpu(3, 1, "reused", 500, 0)}
    # loadgen used 60 more ticks, exited and was reaped by make; a newcomer started and used 25;
    # pid 3 died and its number went to a younger process (less CPU than before): clamped at zero.
    after = {1: ProcessCpu(1, 0, "make", 0, 100), 4: ProcessCpu(4, 1, "new", 25, 0),
             3: ProcessCpu(3, 1, "reused", 12, 0)}
    assert machine.cpu_in_window(before, after) == {1: 60, 4: 25, 3: 0}


def test_the_process_tree_is_the_root_and_all_its_descendants_only() -> None:
    table = {p.pid: p for p in [ProcessCpu(1, 0, "init", 0, 0), ProcessCpu(DRIVER, 1, "python", 0, 0),
                                ProcessCpu(SERVER, DRIVER, "taskset", 0, 0), ProcessCpu(150, SERVER, "worker", 0, 0),
                                ProcessCpu(TRAINER, 1, "train", 0, 0)]}
    assert machine.process_tree(table, DRIVER) == {DRIVER, SERVER, 150}


def test_a_quiet_saturated_step_reads_busy_and_owned_by_the_benchmark() -> None:
    found = window(server_s=9.9, idle1_s=0.1)
    server = found.account([1])
    assert server.busy_share == pytest.approx(0.99)
    assert server.own_share_of_busy == pytest.approx(1.0)
    assert server.foreign_s == 0
    assert found.offenders() == []
    step = {"kind": "closed", "clients": 64, "machine": validity.window_report(found, [1], [0])}
    assert validity.step_flags(step) == []


def test_a_starved_step_is_flagged_and_the_foreign_process_named() -> None:
    # The old report's failure: the core is fully busy, but a trainer holds 60% of it; the server's
    # own CPU (4 s) alone looks like an idle server.
    found = window(server_s=4.0, trainer_s=6.0)
    server = found.account([1])
    assert server.busy_share == pytest.approx(1.0)
    assert server.own_share_of_busy == pytest.approx(0.4)
    assert server.foreign_share == pytest.approx(0.6)
    assert found.offenders() == [machine.Offender(TRAINER, "train.py", pytest.approx(6.0))]
    step = {"kind": "closed", "round": 1, "server": "kserve", "mix": "ranking", "api": "OIP ModelInfer",
            "clients": 64, "machine": validity.window_report(found, [1], [0])}
    assert validity.step_flags(step) == ["foreign work took 60% of server core 1"]


def test_foreign_work_is_a_residual_so_work_proc_cannot_name_is_caught_too() -> None:
    # Another container's job: the core is busy, nothing visible in /proc used it.
    found = window(server_s=4.0, trainer_s=6.0, trainer_pid=TRAINER)
    hidden = Window(found.before, Sample(found.after.at, found.after.cores,
                                         {pid: p for pid, p in found.after.processes.items() if pid != TRAINER},
                                         found.after.own, found.after.affinity, found.after.load_average))
    assert hidden.account([1]).foreign_share == pytest.approx(0.6)
    assert hidden.offenders() == []


def test_a_saturated_pinned_server_core_below_095_busy_is_flagged_but_not_at_one_client_or_the_floor() -> None:
    found = validity.window_report(window(server_s=8.0, idle1_s=2.0), [1], [0])
    assert validity.step_flags({"kind": "closed", "clients": 64, "machine": found}) == [
        "server core 1 busy 0.80 < 0.95 at saturation"]
    assert validity.step_flags({"kind": "ceiling", "machine": found}) != []
    assert validity.step_flags({"kind": "closed", "clients": 1, "machine": found}) == []
    assert validity.step_flags({"kind": "floor", "clients": 64, "machine": found}) == []
    assert validity.step_flags({"kind": "open", "rate": 400, "machine": found}) == []
    # py-spy suspends the server to sample it: the profile's core idles by design, it states no rate
    assert validity.step_flags({"kind": "profile", "clients": 64, "machine": found}) == []


def test_softirq_work_on_the_server_core_is_the_kernels_not_foreign() -> None:
    found = window(server_s=9.0, softirq_s=1.0)
    server = found.account([1])
    assert server.busy_share == pytest.approx(1.0)
    assert server.kernel_s == pytest.approx(1.0)
    assert server.foreign_s == 0
    assert server.own_share_of_busy == pytest.approx(0.9)


def test_an_own_process_allowed_on_several_cores_is_never_counted_as_foreign() -> None:
    found = window(server_s=9.0, idle1_s=1.0)
    driver = found.after.processes[DRIVER]
    after = {**found.after.processes, DRIVER: ProcessCpu(DRIVER, 1, "python", driver.own_ticks + ticks(0.5), 0)}
    busier = {**found.after.cores, 1: CoreTimes(ticks(9.5), ticks(0.5), 0, 0)}
    moved = Window(found.before, Sample(10.0, busier, after, found.after.own, found.after.affinity, (0, 0, 0)))
    assert moved.account([1]).foreign_s == 0  # the unpinned driver's 0.5 s may have run on core 1
    assert moved.account([1]).own_s == pytest.approx(9.0)  # but it is not placed there


def test_unpinned_steps_are_read_over_the_shared_cores_as_one_set() -> None:
    report_ = validity.window_report(window(server_s=4.0, trainer_s=6.0), [1], [0, 1], pinned=False)
    assert [c["cores"] for c in report_["cores"]] == [[0, 1]]
    assert report_["cores"][0]["foreign_share"] == pytest.approx(6.0 / 20.0)
    assert validity.step_flags({"kind": "both_cores", "clients": 64, "machine": report_}) == [
        "foreign work took 30% of shared cores 0,1"]


def test_a_step_without_a_machine_report_is_flagged() -> None:
    assert validity.step_flags({"kind": "closed", "clients": 64}) != []


def test_the_verdict_collects_every_flag_and_the_stamp_names_reasons_and_offenders() -> None:
    starved = {"kind": "closed", "round": 0, "server": "kserve", "mix": "ranking", "api": "OIP ModelInfer",
               "clients": 64, "machine": validity.window_report(window(server_s=4.0, trainer_s=6.0), [1], [0])}
    quiet = {**starved, "server": "infersuite",
             "machine": validity.window_report(window(server_s=9.9, idle1_s=0.1), [1], [0])}
    result = validity.verdict([quiet, starved], {})
    assert not result.valid
    assert (result.steps_checked, result.steps_flagged) == (2, 1)
    assert result.reasons == ["round 0, closed, kserve, ranking, OIP ModelInfer, 64 clients: "
                              "foreign work took 60% of server core 1"]
    lines = validity.stamp(result)
    assert lines[0].startswith("> **INVALID")
    assert any("foreign work took 60%" in line for line in lines)
    assert "`train.py` (pid 900) 6.0 s" in "\n".join(lines)
    assert validity.verdict([quiet], {}).valid
    assert validity.stamp(validity.verdict([quiet], {})) == []


def test_a_forced_start_on_a_busy_machine_makes_the_run_invalid() -> None:
    gate = {"quiet": False, "reasons": ["1-minute load average 3.10 > 0.5 x 2 cores"],
            "offenders": [{"pid": TRAINER, "comm": "train.py", "cpu_s": 4.9}]}
    result = validity.verdict([], gate)
    assert not result.valid
    assert result.reasons == ["started on a busy machine (--force): 1-minute load average 3.10 > 0.5 x 2 cores"]
    assert result.offenders[0]["comm"] == "train.py"


def test_the_quiet_check_refuses_a_high_load_average_and_foreign_work() -> None:
    busy = window(server_s=0.0, trainer_s=3.0, idle1_s=7.0, generator_s=0.0)
    assert validity.quiet_reasons(busy, [0, 1], cpu_count=2) == [
        "1-minute load average 2.40 > 0.5 x 2 cores", "foreign work took 30% of core 1 for 10 s",
        "foreign work took 15% of all cores for 10 s"]
    calm = window(server_s=0.0, idle1_s=10.0, generator_s=0.0)
    calm = Window(calm.before, Sample(10.0, calm.after.cores, calm.after.processes, calm.after.own,
                                      calm.after.affinity, (0.3, 0.2, 0.1)))
    assert validity.quiet_reasons(calm, [0, 1], cpu_count=2) == []


def test_take_sample_reads_a_proc_tree(tmp_path: Path) -> None:
    (tmp_path / "stat").write_text(proc_stat({0: (1, 0, 2, 30, 0, 0, 0, 0, 0, 0), 1: (4, 0, 5, 60, 1, 0, 0, 0, 0, 0)}))
    (tmp_path / "loadavg").write_text("0.50 0.40 0.30 1/116 5234\n")
    for pid, comm, ppid, utime in ((DRIVER, "python", 1, 10), (SERVER, "python", DRIVER, 20), (TRAINER, "x", 1, 9)):
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "stat").write_text(pid_stat(pid, comm, ppid, utime))
    (tmp_path / "self").mkdir()
    taken = machine.take_sample(DRIVER, proc=tmp_path)
    assert taken.own == {DRIVER, SERVER}
    assert taken.processes[SERVER].own_ticks == 20
    assert taken.cores[1] == CoreTimes(busy=9, idle=61, kernel=0, steal=0)
    assert taken.load_average == (0.5, 0.4, 0.3)


def test_an_invalid_report_is_stamped_at_its_top_and_a_valid_one_says_so(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(report, "_plot", lambda *args: None)  # matplotlib is not what is tested
    quiet = validity.window_report(window(server_s=9.9, idle1_s=0.1), [1], [0])
    starved = validity.window_report(window(server_s=4.0, trainer_s=6.0), [1], [0])
    step = {"kind": "closed", "round": 0, "server": "infersuite", "mix": "ranking", "api": "OIP ModelInfer",
            "clients": 64, "throughput_rps": 900.0, "p50_ms": 60.0, "p99_ms": 90.0, "server_cpu_ms_per_request": 1.1,
            "model_cpu_ms_per_request": 0.5, "other_cpu_ms_per_request": 0.6, "errors": 0, "candidates_per_s": 5e4}
    ceiling = {"kind": "ceiling", "round": 0, "server": "bare onnxruntime", "mix": "ranking",
               "rates": {"1": 2700.0, "2": 2600.0}, "machine": quiet}
    context = {"command": "make bench-serving", "started": "2026-12-07 10:00 UTC", "minutes": 20.0,
               "machine": "x86_64, 2 cores", "load_average_before": [0.1, 0.2, 0.3],
               "load_average_after": [1.9, 1.5, 0.9], "server_cores": [1], "generator_cores": [0], "seconds": 6.0,
               "warmup": 2.0, "rounds": 1, "mean_candidates": {"ranking": 60.0},
               "gate": {"quiet": True, "reasons": [], "waited_s": 5.0},
               "configurations": {"kserve": {"version": "kserve==0.21.0", "model": "intra_op_num_threads=1"}}}
    for machine_report, valid in ((quiet, True), (starved, False)):
        steps = [ceiling, {**step, "machine": machine_report}]
        out = tmp_path / f"serving-{valid}.md"
        report.write(out, context, ceilings_by_round(steps), steps, {}, validity.verdict(steps, {}))
        text = out.read_text()
        assert text.startswith("> **INVALID") is not valid
        assert "load average before 0.10, 0.20, 0.30, after 1.90, 1.50, 0.90" in text
        assert "**kserve**: version: `kserve==0.21.0`; model: `intra_op_num_threads=1`" in text
        assert "| ranking | 2700 / 2700 / 2700 | 2600 / 2600 / 2600 |" in text
        assert ("**valid**: 0 of 2" in text) is valid
        assert ("`train.py` (pid 900) 6.0 s" in text) is not valid
        busy_column = "| 0.99 | 1.00 | 0 |" if valid else "| 1.00 | 0.40 | 0 |"
        assert busy_column in text


def test_ceilings_are_collected_per_round_for_min_median_max() -> None:
    steps = [{"kind": "ceiling", "mix": "small", "rates": {"1": 3000.0, "16": 9000.0}},
             {"kind": "closed", "mix": "small"},
             {"kind": "ceiling", "mix": "small", "rates": {"1": 3100.0, "16": 9500.0}}]
    assert ceilings_by_round(steps) == {"small": {"1": [3000.0, 3100.0], "16": [9000.0, 9500.0]}}


def test_a_peers_printed_configuration_is_what_start_peer_passes_it(tmp_path: Path) -> None:
    from benchmarks.peers import launch

    python = tmp_path / "venv" / "bin" / "python"
    command, env = launch._kserve_command(python, tmp_path, Path("/m/model.onnx"), "din-fp32", 1, 5001, [5002])
    kserve = launch.describe("kserve", tmp_path, command, env, 1, {1})
    assert kserve["version"] == "kserve==0.21.0"
    assert "--intra_op_threads 1" in kserve["command"] and kserve["command"].startswith("python -m ")
    assert "intra_op_num_threads=1, inter_op_num_threads=1" in kserve["model"]
    assert "session.intra_op.allow_spinning=0" in kserve["model"]
    assert kserve["environment"] == "KSERVE_LOGLEVEL=WARNING" and "event loop" in kserve["predict"]

    root = tmp_path / "mlserver"
    root.mkdir()
    command, env = launch._mlserver_command(python, root, Path("/m/model.onnx"), "din-fp32", 1, 5001, [5002, 5003])
    mlserver = launch.describe("mlserver", root, command, env, 1, {1})
    assert mlserver["version"] == "mlserver==1.7.1"
    assert '"parallel_workers": 0' in mlserver["settings.json"] and str(root) not in mlserver["settings.json"]
    assert '"intra_op_threads": 1' in mlserver["din-fp32/model-settings.json"]


def test_the_run_refuses_to_start_on_a_busy_machine_and_writes_nothing(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from benchmarks.serving import __main__ as bench

    busy = {"quiet": False, "reasons": ["foreign work took 62% of core 1 for 5 s"], "load_average": [2.0, 1.0, 0.5],
            "offenders": [{"pid": TRAINER, "comm": "train.py", "cpu_s": 3.1}], "waited_s": 120.0}
    monkeypatch.setattr(validity, "wait_until_quiet", lambda cores, wait_s: busy)
    monkeypatch.setattr(bench, "Bench", lambda *args: pytest.fail("a busy machine must not be benchmarked"))
    out = tmp_path / "serving.md"
    with pytest.raises(SystemExit) as exited:
        bench.main(["--out", str(out), "--quiet-wait", "0"])
    assert "refusing to benchmark on a busy machine: foreign work took 62% of core 1" in str(exited.value.code)
    assert "train.py" in str(exited.value.code)
    assert not out.exists()
