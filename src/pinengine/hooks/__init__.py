"""Hooks that put pin checks into the clients people use: ssl, requests, urllib3, gRPC."""
