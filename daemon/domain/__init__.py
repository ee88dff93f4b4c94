"""The pure core: no asyncio, sockets, files, clocks, ccxt, polars or structlog in here."""
