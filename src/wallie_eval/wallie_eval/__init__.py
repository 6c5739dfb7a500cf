"""Wallie's spoken QA evaluation: the question set, its renderer, the scorer and runners."""
