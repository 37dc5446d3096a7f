"""Curriculum building: difficulty signals, phases, mixing, a deterministic order per snapshot."""
