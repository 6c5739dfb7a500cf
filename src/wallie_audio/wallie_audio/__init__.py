"""Wallie audio: capture, voice gate (VAD, wake word, endpointing, barge-in) and player."""
