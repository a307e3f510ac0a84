"""Reliability scenarios at full length and the hostile corpus -> reports/reliability.md
(`make bench-reliability`, `make bench-hostile`)."""
