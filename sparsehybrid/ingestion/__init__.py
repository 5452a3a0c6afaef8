"""Ingestion: read sources, chunk, encode and write documents to a store (no Prefect here)."""
