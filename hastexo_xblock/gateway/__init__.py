"""The websocket gateway: a stateless ASGI service between the browser and the lab."""
