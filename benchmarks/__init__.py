"""Side-by-side benchmarks and load tests of AcousticSense (run as modules: ``python -m benchmarks.<name>``)."""
