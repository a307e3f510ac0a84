"""The ctr family: the DIN paper study report (`make report-ctr`) and Score latency (`make bench-ctr`)."""
