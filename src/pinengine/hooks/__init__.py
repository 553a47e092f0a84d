"""Hooks that put pin checks into the clients people use: ssl (and so http.client, urllib, asyncio, aiohttp), requests, urllib3, httpx, gRPC."""
