"""The plugin API, the plugin loader and the built-in commands (themselves a plugin)."""
