"""Example plugins, shipped in the package so that `botkit init`'s config works as it is.

Each is one module with a `plugin = Plugin(...)`; copy one into your plugins folder to start
your own. They are found by name through the `botkit.plugins` entry points.
"""
