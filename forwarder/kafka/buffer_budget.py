"""The producer's memory budget default, importable by the command line without librdkafka.

1200 MB holds a 5-minute broker outage at 10k scalar f144 updates/s: 3M messages of about
100 bytes payload and key, each costing ``PER_MESSAGE_OVERHEAD`` more while queued.
"""

DEFAULT_BUFFER_MB = 1200
PER_MESSAGE_OVERHEAD = 256  # bytes a queued message costs beyond payload and key
