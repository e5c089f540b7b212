"""The HTTP face of kindling: parse, authenticate, call a component, serialize.

No business logic lives here. Request and response shapes come from the Lambda service
model that botocore ships (``model.py``), so the wire format is data, not code.
"""
