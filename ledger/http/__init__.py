"""The HTTP service: the ASGI application and its routes."""
