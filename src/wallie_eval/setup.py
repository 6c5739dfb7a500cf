"""Build script of wallie_eval; what it installs is declared in setup.cfg."""

from setuptools import setup

setup()
