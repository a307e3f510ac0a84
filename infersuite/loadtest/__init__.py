"""infersuite's load-test harness: `python -m infersuite.loadtest {run,slo,suite,selfcheck,list}`.

    python -m infersuite.loadtest run --service ctr --target host:50051 --concurrency 1,4,16  # closed-loop sweep
    python -m infersuite.loadtest run --service ctr --rate 100,200,400 --arrival poisson    # open-loop sweep
    python -m infersuite.loadtest run --service oip --param model=din-fp32 --trace sends.txt  # replay a trace
    python -m infersuite.loadtest slo --service ctr --slo-p99-ms 50 --duration 30 --trials 3  # capacity at an SLO
    python -m infersuite.loadtest suite --start-server ctr,audio --repository model_repository  # `make loadtest`
    python -m infersuite.loadtest selfcheck                                                 # the generator's ceiling

Open-loop latency is measured from each request's INTENDED send time (coordinated-omission safe,
wrk2's lesson) and from the actual send; late and dropped sends are counted, never hidden.
Modules: engine (one process's load loop), workers (processes + merging), schedule (arrivals),
stats (HDR histograms), generators/ (per-service requests + response checks), runner (trials,
sweeps, SLO search, self-check), server_metrics (/metrics join), report + plots, cli + commands,
suite (+ local_suite), trivial_server. Imports only `protos` and third-party packages.
"""
