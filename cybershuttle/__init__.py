"""Cybershuttle core: storage, datasets, compute, runtimes, sessions, templates,
applications and models behind names.

Each concept is one module named as the CLI names it (`cybershuttle.storage`,
`cybershuttle.compute`, ...); import the one you need. Importing this package
stays cheap on purpose: the CLI's `--help` depends on it.
"""
__version__ = "0.1.0"
