"""MILS engine and worker: optimizer core, model adapters, store and tasks."""
