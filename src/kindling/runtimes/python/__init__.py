"""kindling's runtime client for the managed Python runtimes (a standalone stdlib script)."""

import pathlib

BOOTSTRAP = pathlib.Path(__file__).with_name("bootstrap.py")
