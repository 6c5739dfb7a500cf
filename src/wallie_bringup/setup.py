"""Build script of wallie_bringup; what it installs is declared in setup.cfg."""

from setuptools import setup

setup()
