"""The HTTP service (`mrl serve`): `search_service.py` (`SearchService`, `ServiceConfig`:
search, classify, reload, readiness), `app.py` (`create_app`, the FastAPI routes, errors and
metrics) and `schema.py` (request validation).
"""
