"""HTTP routers: thin adapters from requests to domain functions."""
