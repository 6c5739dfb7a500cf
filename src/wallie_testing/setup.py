"""Build script of wallie_testing; what it installs is declared in setup.cfg."""

from setuptools import setup

setup()
