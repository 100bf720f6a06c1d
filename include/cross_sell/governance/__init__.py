"""Model governance: the deployment policy, sealed task records (custody), signed approvals,
provenance, lineage and MLflow tracking.
"""
