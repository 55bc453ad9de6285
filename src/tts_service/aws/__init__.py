"""AWS Lambda glue: Powertools at each handler entry, init-time secrets and voices, API Gateway adapters."""
