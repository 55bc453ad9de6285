"""HTTP and WebSocket routers, one module per endpoint; the Lambdas and the shim mount the same ones."""
