"""Shared pytest set-up. Server fixtures live one file per server in fixtures/ and are loaded here, so
that each server's recipe stands alone (fixtures/postgres.py, fixtures/s3.py, ...)."""
import glob
import os

_here = os.path.dirname(__file__)
pytest_plugins = sorted(
    "fixtures." + os.path.basename(p)[:-3]
    for p in glob.glob(os.path.join(_here, "fixtures", "*.py"))
    if not p.endswith("__init__.py")
)
