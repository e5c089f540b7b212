"""The data plane's routing: counting, assignment, the invoke path and the async queue."""
