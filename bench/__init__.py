"""kindling's benchmark harness (DESIGN.md section 5): ``python -m bench`` or ``kindling bench``."""
