"""Build script of wallie_tts; what it installs is declared in setup.cfg."""

from setuptools import setup

setup()
