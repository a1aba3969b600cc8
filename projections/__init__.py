"""Projections: one module per table, each a pure mapping from events to row changes,
and the machinery that applies them inline, rebuilds and verifies them."""
