"""The splitcompute family: the Entropic Student rate-accuracy and latency report (`make report-splitcompute`)."""
