"""The C part of kgdbstub: hot-path unicorn callbacks, loaded with ctypes (kgdbstub/x86/hothooks.py, counting.py)."""
from setuptools import Extension, setup

setup(ext_modules=[Extension("kgdbstub.x86._hothooks", sources=["kgdbstub/x86/hothooks.c"],
                             extra_compile_args=["-O2"]),
                   Extension("kgdbstub.x86._counting", sources=["kgdbstub/x86/counting.c"],
                             extra_compile_args=["-O2"])])
