"""Shared training-pipeline parts. Importing this package pulls in no Ray or MLflow: modules that
need them import them themselves, so light helpers (progress) work on machines without them."""
