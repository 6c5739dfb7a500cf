"""Wallie TTS: streaming speech synthesis lifecycle node (Piper, XTTS, espeak-ng)."""
