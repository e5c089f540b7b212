"""Event sources and routing: what makes a function run besides a direct Invoke."""
