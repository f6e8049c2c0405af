"""The observer: health probes now; request metrics and the canary judge later."""
