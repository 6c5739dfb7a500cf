"""Wallie LLM: streaming, interruptible reply generation with conversation memory."""
