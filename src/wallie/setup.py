"""Build script of wallie (launch files only); what it installs is declared in setup.cfg."""

from setuptools import setup

setup(packages=[])  # launch files only (see setup.cfg)
