"""Wallie bringup: launch, parameters, manager, metrics and the wallie CLI."""
