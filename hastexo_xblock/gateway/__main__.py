"""``python -m hastexo_xblock.gateway``: serve the gateway (see :mod:`.serve`)."""

from .serve import main

main()
