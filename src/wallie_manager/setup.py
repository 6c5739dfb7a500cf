"""Build script of wallie_manager; what it installs is declared in setup.cfg."""

from setuptools import setup

setup()
