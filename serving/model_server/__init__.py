"""The development model server (`mrl model-server`): a TF-Serving-compatible gRPC and REST
front for exported SavedModels, for tests and local work (production: the TF Serving image).

`server.py` holds `ModelServer`; `manager.py` loads and polls versions; `grpc_api.py` and
`rest_api.py` (with `rest_json.py`, TF Serving's JSON tensor codec) speak the two APIs.
"""
