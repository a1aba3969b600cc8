"""Finance's view: the revenue report, and proof that the log was not rewritten."""
