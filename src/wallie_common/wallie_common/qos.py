"""QoS profiles of the Wallie graph, one named constant per kind of data."""

from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)

# Raw audio: a late frame is useless, so never retransmit or block the publisher.
# Depth 50 (~1.6 s of 32 ms frames) absorbs a subscriber that stalls for a moment.
AUDIO_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=50,
    reliability=qos_profile_sensor_data.reliability,
    durability=DurabilityPolicy.VOLATILE,
)

# Reply audio: losing a frame is an audible gap, so it is reliable; deep enough for a
# whole long reply chunk synthesised faster than real time.
REPLY_AUDIO_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=500,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)

# Events, utterance audio, transcripts, replies, interrupts: a lost message loses a turn.
EVENT_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=10,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)

# Utterance pieces stream while the user talks; keep a whole turn's worth queued.
UTTERANCE_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=200,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)

# Assistant state: late joiners must see the current state.
STATE_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)


def describe(profile: QoSProfile) -> str:
    """One-line summary of a profile for the startup log."""
    return (f'{profile.reliability.name.lower()}/{profile.durability.name.lower()}'
            f'/depth={profile.depth}')
