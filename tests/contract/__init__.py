"""Offline contract checks of the deployment configuration (Helm values, IAM, Dockerfile)."""
