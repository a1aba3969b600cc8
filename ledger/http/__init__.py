"""``ledger serve``: the HTTP service the checkout flow, Stripe and the video player call
(docs/service.md). ``create_app`` builds the ASGI application and its routes (the Stripe
webhook's in ``stripe_*.py``, docs/stripe.md), ``server.serve`` runs it under uvicorn."""
