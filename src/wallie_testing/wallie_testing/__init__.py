"""Wallie test harness (the only package that needs pytest, in wallie_testing.fixtures)."""
