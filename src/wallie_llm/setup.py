"""Build script of wallie_llm; what it installs is declared in setup.cfg."""

from setuptools import setup

setup()
