"""Seeing what a run did and does: its output log, `orchestr logs`, `orchestr cancel`, CI views, OpenTelemetry."""
