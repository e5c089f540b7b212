"""Identity: accounts and their keys, and SigV4 verification of every API request."""
