"""Build script of wallie_audio; what it installs is declared in setup.cfg."""

from setuptools import setup

setup()
