"""Talking to boards: serial transports (any pyserial URL) and the boards edgeforge can start itself."""
