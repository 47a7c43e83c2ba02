"""The plugin API, the plugin loader, the shipped examples, and botkit's own commands
(builtin, explain, fewshot: plugins too, given the internal Context)."""
