"""Build script of wallie_asr; what it installs is declared in setup.cfg."""

from setuptools import setup

setup()
