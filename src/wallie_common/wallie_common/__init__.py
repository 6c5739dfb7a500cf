"""Shared plumbing of the Wallie nodes."""
