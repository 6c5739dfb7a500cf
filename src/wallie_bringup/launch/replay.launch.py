"""Replay a rosbag2 recording into the Wallie graph instead of the microphone.

Starts everything bringup.launch.py starts except the capture node, waits until the
manager reports the assistant ready (`wallie ready`), then plays the bag (which publishes
`audio/in` as the capture node would): with `ros2 bag play` where rosbag2 is installed (a ROS
distro), else with Wallie's own player (`wallie replay`, which reads the same mcap/sqlite3
bags without rosbag2). Without a `bag` argument it only brings the graph up.

Examples:
  ros2 launch wallie_bringup replay.launch.py bag:=my_bag output:=/tmp/a.wav
  ros2 launch wallie_bringup replay.launch.py bag:=my_bag rate:=2.0 no_wake:=true
"""

import importlib.util
import os
import sys

from launch import LaunchDescription
from launch.actions import (
    DeclareLaunchArgument,
    ExecuteProcess,
    IncludeLaunchDescription,
    RegisterEventHandler,
)
from launch.conditions import IfCondition
from launch.event_handlers import OnProcessExit
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PythonExpression

HERE = os.path.dirname(os.path.abspath(__file__))


def have_ros2_bag() -> bool:
    """True where `ros2 bag` exists (rosbag2's ros2bag verb package is importable)."""
    return importlib.util.find_spec('ros2bag') is not None


def play_command(context) -> list[str]:
    """`ros2 bag play` if rosbag2 is there, else `wallie replay`; in the namespace."""
    def arg(name):
        return LaunchConfiguration(name).perform(context)
    bag, rate, ns = arg('bag'), arg('rate'), arg('namespace').strip('/')
    remap = [f'/audio/in:=/{ns}/audio/in'] if ns else []
    if have_ros2_bag():
        return ['ros2', 'bag', 'play', bag, '--rate', rate] + (
            ['--remap'] + remap if remap else [])
    return [sys.executable, '-m', 'wallie_cli.cli', 'replay', bag, '--rate', rate] + (
        ['--remap'] + remap if remap else [])


def generate_launch_description():
    """Bring up the graph without capture; given a bag, wait for ready, then play it."""
    bag = LaunchConfiguration('bag')
    have_bag = PythonExpression(["'", bag, "' != ''"])
    args = [
        DeclareLaunchArgument('bag', default_value='',
                              description='rosbag2 (directory or .mcap) holding audio/in.'),
        DeclareLaunchArgument('rate', default_value='1.0', description='Playback rate.'),
        DeclareLaunchArgument('output', default_value='',
                              description='Write replies to this WAV file (or `null`).'),
        DeclareLaunchArgument('no_wake', default_value='false',
                              description='No wake word: every utterance is a turn.'),
        DeclareLaunchArgument('profile', default_value='', description='cpu or gpu.'),
        DeclareLaunchArgument('namespace', default_value='', description='ROS namespace.'),
        DeclareLaunchArgument('params_file', default_value='',
                              description='Extra ROS parameter file.'),
        DeclareLaunchArgument('log_level', default_value='info', description='Log level.'),
        DeclareLaunchArgument('ready_timeout', default_value='300',
                              description='Seconds to wait for the graph before playing.'),
    ]
    graph = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(HERE, 'bringup.launch.py')),
        launch_arguments={
            'skip': 'capture',
            'output': LaunchConfiguration('output'),
            'no_wake': LaunchConfiguration('no_wake'),
            'profile': LaunchConfiguration('profile'),
            'namespace': LaunchConfiguration('namespace'),
            'params_file': LaunchConfiguration('params_file'),
            'log_level': LaunchConfiguration('log_level'),
        }.items())
    wait_ready = ExecuteProcess(
        cmd=[sys.executable, '-m', 'wallie_cli.cli', 'ready',
             '--timeout', LaunchConfiguration('ready_timeout'),
             '--namespace', LaunchConfiguration('namespace')],
        output='screen', condition=IfCondition(have_bag))
    start_play = RegisterEventHandler(OnProcessExit(
        target_action=wait_ready,
        on_exit=lambda event, ctx: [ExecuteProcess(cmd=play_command(ctx), output='screen')]
        if event.returncode == 0 else []))
    return LaunchDescription(args + [graph, wait_ready, start_play])
