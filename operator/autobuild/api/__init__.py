"""The AutomatedBuild API: pydantic models (the single source of truth) and the generated CRD."""
