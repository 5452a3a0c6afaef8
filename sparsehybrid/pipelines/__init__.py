"""Orchestration: the Prefect flows and the job-config file that drive ingestion."""
