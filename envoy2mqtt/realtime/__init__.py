"""The opt-in real-time cadence: grid / solar / battery / house power every few seconds on `<base>/<envoy>/live`.

Pure units (the adaptive interval, the maintenance window, the source choice, the livedata stream
keeper) and the loop that drives them (`reader.RealtimeReader`); the payload comes from
`envoy2mqtt.normalize.live`.
"""
