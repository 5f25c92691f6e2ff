from setuptools import setup

# Everything else is in pyproject.toml; this only hooks the C core's cffi build.
setup(cffi_modules=["native/build.py:ffibuilder"])
