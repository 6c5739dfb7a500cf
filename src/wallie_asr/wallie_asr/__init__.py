"""Wallie ASR: streaming faster-whisper speech recognition lifecycle node."""
