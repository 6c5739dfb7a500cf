"""Wallie bringup: launch files, parameter profiles, the node graph, the no-distro supervisor."""
