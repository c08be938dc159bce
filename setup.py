"""The C part of kgdbstub: hot-path unicorn callbacks, loaded with ctypes (see kgdbstub/x86/hothooks.py)."""
from setuptools import Extension, setup

setup(ext_modules=[Extension("kgdbstub.x86._hothooks", sources=["kgdbstub/x86/hothooks.c"],
                             extra_compile_args=["-O2"])])
