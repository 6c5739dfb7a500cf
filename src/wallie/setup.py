from setuptools import setup

setup(packages=[])  # launch files only (see setup.cfg)
