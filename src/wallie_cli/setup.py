"""Build script of wallie_cli; what it installs is declared in setup.cfg."""

from setuptools import setup

setup()
