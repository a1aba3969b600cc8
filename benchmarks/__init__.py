"""Side-by-side benchmarks: every figure is a ratio against its reference, measured in the same run."""
