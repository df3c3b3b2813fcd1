"""Surgeflow's data files: reference data, intents, reply policy, surge templates and samples.

Not code: a package only so that the wheel ships these files beside `flows`, `operators` and
`schemas` (see `[tool.setuptools.package-data]` in pyproject.toml). Read them through
`operators.runtime.resources`, never by a path relative to a module.
"""
