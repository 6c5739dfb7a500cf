"""Wallie manager: lifecycle driver, restarts, governor, turn metrics and diagnostics."""
