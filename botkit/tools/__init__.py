"""Tools the model may call: botkit's own (plugin commands declared as tools) and MCP servers'."""
