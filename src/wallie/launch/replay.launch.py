"""Alias of wallie_bringup's replay.launch.py: `ros2 launch wallie replay.launch.py`."""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource


def generate_launch_description():
    """Include wallie_bringup's replay.launch.py."""
    share = get_package_share_directory('wallie_bringup')
    path = os.path.join(share, 'launch', 'replay.launch.py')
    return LaunchDescription([IncludeLaunchDescription(PythonLaunchDescriptionSource(path))])
