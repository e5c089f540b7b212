"""Event sources, routing and sinks outside Lambda's own invoke path: destinations of
asynchronous invocations (``destinations``), EventBridge's pattern language
(``patterns``)."""
