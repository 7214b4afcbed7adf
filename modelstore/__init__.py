"""Model artifacts and the MLflow registry, shared by the pipelines (which log and promote models) and
the services (which load champions): neither owns it, so it lives in neither.

``artifacts``: a model as files (safetensors weights + the config that rebuilds it); ``registry``: those
files as MLflow models (pyfunc), versions, the ``champion`` alias.
"""
