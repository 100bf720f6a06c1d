"""The prediction service: serves the current champion over HTTP and follows it when it changes."""
