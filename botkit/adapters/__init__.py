"""Platform adapters: each turns platform events into Incoming and delivers replies."""
