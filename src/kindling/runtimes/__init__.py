"""What runs inside a function sandbox: runtime clients and the runtime catalog."""
