"""Build script of wallie_common; what it installs is declared in setup.cfg."""

from setuptools import setup

setup()
