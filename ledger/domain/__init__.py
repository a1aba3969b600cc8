"""The domain: aggregates, events and rejections. No SQL, no clock."""
