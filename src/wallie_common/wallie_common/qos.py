"""QoS profiles of the Wallie graph, one named constant per kind of data."""

from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)


def _keep_last(depth: int, reliability: ReliabilityPolicy = ReliabilityPolicy.RELIABLE,
               durability: DurabilityPolicy = DurabilityPolicy.VOLATILE) -> QoSProfile:
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=reliability,
                      durability=durability)


# Raw audio: a late frame is useless, so never retransmit or block the publisher.
# Depth 50 (~1.6 s of 32 ms frames) absorbs a subscriber that stalls for a moment.
AUDIO_QOS = _keep_last(50, qos_profile_sensor_data.reliability)

# Reply audio: losing a frame is an audible gap, so it is reliable; deep enough for a
# whole long reply chunk synthesised faster than real time.
REPLY_AUDIO_QOS = _keep_last(500)

# Events, utterance audio, transcripts, replies, interrupts: a lost message loses a turn.
EVENT_QOS = _keep_last(10)

# Utterance pieces stream while the user talks; keep a whole turn's worth queued.
UTTERANCE_QOS = _keep_last(200)

# Assistant state: late joiners must see the current state.
STATE_QOS = _keep_last(1, durability=DurabilityPolicy.TRANSIENT_LOCAL)


def describe(profile: QoSProfile) -> str:
    """One-line summary of a profile for the startup log."""
    return (f'{profile.reliability.name.lower()}/{profile.durability.name.lower()}'
            f'/depth={profile.depth}')
