"""Generated gRPC stubs (`python protos/generate.py`); never edit by hand, a test compares them."""
