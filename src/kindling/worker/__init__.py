"""The worker: owns sandboxes on one host, creates, invokes and destroys them."""
