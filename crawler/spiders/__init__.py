"""The spiders; one generic spider serves every outlet in the registry."""
