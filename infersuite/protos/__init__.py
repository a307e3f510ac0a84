"""Protocol buffer sources; `make protos` generates the Python stubs next to them (never edited)."""
