"""HTTP routes, thin: each parses its request, takes one snapshot and calls the service."""
