"""Shim so `pip install -e .` works with setup.cfg-only metadata."""
from setuptools import setup

setup()
