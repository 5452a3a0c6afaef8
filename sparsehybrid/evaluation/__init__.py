"""Evaluation: BEIR datasets, IR metrics and the retrieve-then-rerank benchmark."""
