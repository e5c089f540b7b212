"""Event sources and sinks outside Lambda's own API: destinations of asynchronous
invocations (``destinations``)."""
