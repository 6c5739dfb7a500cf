from wallie_testing.fixtures import ros_env, probe, node_process  # noqa
