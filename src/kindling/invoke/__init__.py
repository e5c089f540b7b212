"""The data plane's routing: counting, placement, assignment and keep-alive, the invoke
path, provisioned concurrency and the async queue."""
