"""``ledger serve``: the HTTP service the checkout flow, Stripe and the video player call
(docs/service.md). ``create_app`` builds the ASGI application, ``server.serve`` runs it
under uvicorn."""
